"""Drawing finished spans as a tree: how tests, the docs and the demo show what was traced.

Reads back what :mod:`celery_events.exporters.opentelemetry` recorded (the call's outcome, the
attempt's state and retries, retry events, errors, links) from the SDK's finished spans; it
records nothing itself.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from opentelemetry.trace import StatusCode

from . import semconv

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from opentelemetry.sdk.trace import Event, ReadableSpan

__all__ = ["format_span_tree"]


def format_span_tree(spans: Iterable[ReadableSpan]) -> str:
    """Draw finished spans as a tree of parents and children, one line per span.

    Each line shows the span's name, kind and duration, and what celery-events recorded: the
    call's outcome, the attempt's retries and state, retries, errors and links. Spans whose
    parent is not among ``spans`` start trees of their own; siblings are in start order.

    Args:
        spans: finished spans, e.g. ``InMemorySpanExporter().get_finished_spans()``.

    Returns:
        The tree, lines joined by newlines; empty for no spans.
    """
    ordered = sorted(spans, key=lambda span: span.start_time or 0)
    names = {span.context.span_id: span.name for span in ordered}
    children: defaultdict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in ordered:
        parent_id = span.parent.span_id if span.parent is not None else None
        children[parent_id if parent_id in names else None].append(span)
    lines: list[str] = []

    def draw(span: ReadableSpan, lead: str, indent: str) -> None:
        lines.append(lead + _describe(span, names))
        below = children[span.context.span_id]
        for index, child in enumerate(below):
            last = index == len(below) - 1
            draw(
                child, indent + ("└── " if last else "├── "), indent + ("    " if last else "│   ")
            )

    for root in children[None]:
        draw(root, "", "")
    return "\n".join(lines)


def _describe(span: ReadableSpan, names: Mapping[int, str]) -> str:
    attributes = span.attributes or {}
    duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    parts = [span.name, span.kind.name, f"{duration_ms:.1f} ms"]
    if semconv.INVOCATION_OUTCOME in attributes:
        parts.append(str(attributes[semconv.INVOCATION_OUTCOME]))
    if semconv.TASK_STATE in attributes:
        retries = attributes.get(semconv.TASK_RETRIES)
        parts.append(f"{attributes[semconv.TASK_STATE]!s} (retries={retries!s})")
    parts.extend(_retry(event) for event in span.events if event.name == semconv.RETRY_EVENT)
    if span.status.status_code is StatusCode.ERROR:
        parts.append(f"ERROR {span.status.description or attributes.get(semconv.ERROR_TYPE)}")
    parts.extend(
        f"linked to {names[link.context.span_id]}"
        for link in span.links
        if link.context.span_id in names
    )
    return " · ".join(parts)


def _retry(event: Event) -> str:
    attributes = event.attributes or {}
    text = f"retry at {attributes.get(semconv.RETRY_ETA)!s}"
    if semconv.EXCEPTION_TYPE in attributes:
        error = attributes[semconv.EXCEPTION_TYPE]
        text += f" after {error!s}: {attributes.get(semconv.EXCEPTION_MESSAGE)!s}"
    return text
