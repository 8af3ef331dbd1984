"""The OpenTelemetry exporter: a trace for every task call, joined across processes, and metrics.

A call is a PRODUCER span from apply to its outcome, so an on-commit call shows its wait for the
commit. A call that triggers writes its W3C trace context into the message headers, and its span
ends when the broker has taken the message (Celery's ``after_task_publish``), or when the attempt
starts for an eager call; a call that joins or is ignored ends it at once; a call that fails to
trigger or publish ends it as an error. Each attempt where the task runs is a CONSUMER span
whose parent is the producer span (or which links to it, with ``link_to_producer``). A retry is a
span event, a failure an exception with ERROR status, and a caller's wait that times out an ERROR
span on the caller's trace. Only opentelemetry-api is used: without an SDK configured, nothing is
recorded. The names are in :mod:`celery_events.exporters.semconv` and ``docs/exporters.md``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

from celery import signals as celery_signals
from celery import states
from opentelemetry import context, metrics, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from celery_events import signals
from celery_events.__about__ import __version__
from celery_events.headers import INVOCATION_ID_HEADER, queue_wait, read_header

from . import semconv
from .base import DEFAULT_MAX_IN_FLIGHT, SignalExporter, check_option

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from contextvars import Token
    from datetime import datetime

    from celery import Task
    from celery.app.task import Context as Request
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AnyValue, Attributes

__all__ = ["OpenTelemetryExporter", "format_span_tree"]


class _RequestHeaders(Getter["Request"]):
    """Reads trace context from the running task's message headers (``task.request``)."""

    def get(self, carrier: Request, key: str) -> list[str] | None:
        value = read_header(carrier, key)
        return None if value is None else [str(value)]

    def keys(self, carrier: Request) -> list[str]:
        return list(carrier.headers or ())


_REQUEST_HEADERS = _RequestHeaders()


_Attempt: TypeAlias = "tuple[Span, Token[Context], float]"
"""A running attempt: its span, the token of the context it attached, its start time."""


class OpenTelemetryExporter(SignalExporter):
    """Traces every task call and attempt, and counts calls and times attempts.

    Args:
        link_to_producer: start each attempt's CONSUMER span in a trace of its own, linked to
            the call's PRODUCER span, instead of as its child.
        max_in_flight: how many calls (from apply to outcome) and how many running attempts are
            followed at once, each; past it the oldest is dropped and its span never ends.

    Raises:
        django.core.exceptions.ImproperlyConfigured: an option has a bad value.
    """

    name = "opentelemetry"

    def __init__(
        self, *, link_to_producer: bool = False, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    ) -> None:
        check_option(
            self.name,
            "link_to_producer",
            link_to_producer,
            valid=isinstance(link_to_producer, bool),
            expected="a bool",
        )
        self._link_to_producer = link_to_producer
        self._calls = self.in_flight(max_in_flight)
        self._publishing = self.in_flight(max_in_flight)
        self._attempts = self.in_flight(max_in_flight)
        # Proxies until the application sets its providers, then the real thing: getting them
        # here, once, is right even when the SDK is configured after Django started.
        self._tracer = trace.get_tracer(semconv.SCOPE, __version__, schema_url=semconv.SCHEMA_URL)
        meter = metrics.get_meter(semconv.SCOPE, __version__, schema_url=semconv.SCHEMA_URL)
        self._invocations = meter.create_counter(
            semconv.INVOCATIONS_METRIC,
            unit="{invocation}",
            description=(
                "Task calls, by task name and outcome (triggered, unique, ignored or failed)."
            ),
        )
        self._durations = meter.create_histogram(
            semconv.TASK_DURATION_METRIC,
            unit="s",
            description="Run time of task attempts, by task name and final state.",
            explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS,
        )
        self._queue_waits = meter.create_histogram(
            semconv.QUEUE_WAIT_METRIC,
            unit="s",
            description=(
                "Time task messages waited before their attempt started (since the call "
                "triggered, or since their eta), by task name and queue."
            ),
            explicit_bucket_boundaries_advisory=semconv.QUEUE_WAIT_BUCKETS,
        )
        self.receivers = {
            signals.invocation_apply: self._applied,
            signals.invocation_trigger: self._triggered,
            signals.invocation_unique: partial(self._settled, semconv.UNIQUE),
            signals.invocation_ignored: partial(self._settled, semconv.IGNORED),
            signals.invocation_failure: self._failed_to_trigger,
            signals.invocation_timeout: self._timed_out,
            signals.task_start: self._started,
            signals.task_retry: self._retrying,
            signals.task_failure: self._failed,
            signals.task_success: self._succeeded,
            celery_signals.task_postrun: self._postrun,
            celery_signals.after_task_publish: self._published,
        }

    # The caller's side: one PRODUCER span per call.

    def _applied(
        self, task: Task[Any, Any], *, invocation_id: str, options: Mapping[str, Any], **_: Any
    ) -> None:
        operation = semconv.APPLY_ASYNC if options["is_async"] else semconv.APPLY
        span = self._tracer.start_span(
            f"{operation} {task.name}",
            kind=SpanKind.PRODUCER,
            attributes={
                semconv.MESSAGING_SYSTEM: semconv.CELERY,
                semconv.MESSAGING_OPERATION_TYPE: semconv.SEND,
                semconv.MESSAGING_OPERATION_NAME: operation,
                semconv.MESSAGING_DESTINATION_NAME: options["queue"],
                semconv.MESSAGING_MESSAGE_CONVERSATION_ID: invocation_id,
                semconv.TASK_NAME: task.name,
                semconv.INVOCATION_ON_COMMIT: options["is_on_commit"],
            },
        )
        self._calls.add(invocation_id, span)

    def _outcome(self, outcome: str, invocation_id: str, task_id: str | None) -> Span | None:
        """Return the call's span, no longer waiting for an outcome, with its outcome set."""
        span: Span | None = self._calls.pop(invocation_id)
        if span is None:
            return None
        if task_id is None:
            span.set_attribute(semconv.INVOCATION_OUTCOME, outcome)
        else:  # both at once: the span takes its lock once
            span.set_attributes(
                {semconv.INVOCATION_OUTCOME: outcome, semconv.MESSAGING_MESSAGE_ID: task_id}
            )
        return span

    def _count(self, task_name: str, outcome: str) -> None:
        self._invocations.add(
            1, {semconv.TASK_NAME: task_name, semconv.INVOCATION_OUTCOME: outcome}
        )

    def _triggered(
        self,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str,
        options: Mapping[str, Any],
        **_: Any,
    ) -> None:
        """Write the trace context into the message's headers; the span ends once published."""
        span = self._outcome(semconv.TRIGGERED, invocation_id, task_id)
        if span is not None:
            propagate.inject(options["headers"], context=trace.set_span_in_context(span))
            self._publishing.add(invocation_id, span)

    def _published(
        self, *, sender: str, headers: Mapping[str, Any] | None = None, **_: Any
    ) -> None:
        """End the PRODUCER span of a triggered call whose message the broker has taken."""
        if self._publishing and headers:  # usually empty: a call is between trigger and publish
            # A call's invocation id is its task id unless a header names it.
            invocation_id = headers.get(INVOCATION_ID_HEADER) or headers.get("id")
            self._end_published(sender, invocation_id)

    def _end_published(self, task_name: str, invocation_id: str | None) -> None:
        span = self._publishing.pop(invocation_id)
        if span is not None:
            self._count(task_name, semconv.TRIGGERED)
            span.end()

    def _settled(
        self,
        outcome: str,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str | None,
        options: Mapping[str, Any],
        **_: Any,
    ) -> None:
        """End the PRODUCER span of a call that joined a running call or was ignored."""
        self._count(task.name, outcome)
        span = self._outcome(outcome, invocation_id, task_id)
        if span is not None:
            # Read back by a timeout's span, which joins the call's trace.
            propagate.inject(options["headers"], context=trace.set_span_in_context(span))
            span.end()

    def _failed_to_trigger(
        self,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str,
        exc: BaseException,
        **_: Any,
    ) -> None:
        """End the PRODUCER span of a call that could not be triggered or published, in error."""
        self._count(task.name, semconv.FAILED)
        span = self._publishing.pop(invocation_id)  # triggered, then the publish failed
        if span is None:
            span = self._outcome(semconv.FAILED, invocation_id, task_id)
        else:
            span.set_attribute(semconv.INVOCATION_OUTCOME, semconv.FAILED)
        if span is not None:
            _record_error(span, exc)
            span.end()

    def _timed_out(
        self,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str | None,
        ex: BaseException,
        options: Mapping[str, Any],
        **_: Any,
    ) -> None:
        attributes: dict[str, AnyValue] = {
            semconv.MESSAGING_MESSAGE_CONVERSATION_ID: invocation_id,
            semconv.TASK_NAME: task.name,
        }
        if task_id is not None:
            attributes[semconv.MESSAGING_MESSAGE_ID] = task_id
        span = self._tracer.start_span(
            f"{semconv.GET} {task.name}",
            context=propagate.extract(options.get("headers") or {}),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        _record_error(span, ex)
        span.end()

    # Where the task runs: one CONSUMER span per attempt.

    def _started(self, task: Task[Any, Any], *, invocation_id: str, task_id: str, **_: Any) -> None:
        if self._publishing:  # an eager call's attempt starts where it was triggered
            self._end_published(task.name, invocation_id)
        request = task.request
        carried = propagate.extract(request, getter=_REQUEST_HEADERS)
        parent = carried
        links: tuple[Link, ...] = ()
        if self._link_to_producer:
            producer = trace.get_current_span(carried).get_span_context()
            parent = trace.set_span_in_context(trace.INVALID_SPAN, carried)
            links = (Link(producer),) if producer.is_valid else ()
        attributes: dict[str, AnyValue] = {
            semconv.MESSAGING_SYSTEM: semconv.CELERY,
            semconv.MESSAGING_OPERATION_TYPE: semconv.PROCESS,
            semconv.MESSAGING_OPERATION_NAME: semconv.RUN,
            semconv.MESSAGING_MESSAGE_ID: task_id,
            semconv.MESSAGING_MESSAGE_CONVERSATION_ID: invocation_id,
            semconv.TASK_NAME: task.name,
            semconv.TASK_RETRIES: request.retries,
        }
        wait_attributes: dict[str, AnyValue] = {semconv.TASK_NAME: task.name}
        queue = (request.delivery_info or {}).get("routing_key")
        if queue:  # None when eager: no queue is involved
            attributes[semconv.MESSAGING_DESTINATION_NAME] = queue
            wait_attributes[semconv.MESSAGING_DESTINATION_NAME] = queue
        wait = queue_wait(request, time.time())
        if wait is not None:
            attributes[semconv.TASK_QUEUE_WAIT] = wait
            self._queue_waits.record(wait, wait_attributes)
        span = self._tracer.start_span(
            f"{semconv.RUN} {task.name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        token = context.attach(trace.set_span_in_context(span, carried))
        self._attempts.add(task_id, (span, token, time.perf_counter()))

    def _retrying(
        self,
        task: Task[Any, Any],
        *,
        task_id: str,
        exc: BaseException | None,
        eta: datetime,
        **_: Any,
    ) -> None:
        retry: dict[str, AnyValue] = {semconv.RETRY_ETA: eta.isoformat()}
        if exc is not None:
            retry[semconv.EXCEPTION_TYPE] = _type_name(exc)
            retry[semconv.EXCEPTION_MESSAGE] = str(exc)
        self._end_attempt(task, task_id, states.RETRY, retry=retry)

    def _failed(self, task: Task[Any, Any], *, task_id: str, exc: BaseException, **_: Any) -> None:
        self._end_attempt(task, task_id, states.FAILURE, exc=exc)

    def _succeeded(self, task: Task[Any, Any], *, task_id: str, **_: Any) -> None:
        self._end_attempt(task, task_id, states.SUCCESS)

    def _postrun(self, *, task: Task[Any, Any], task_id: str, state: str | None, **_: Any) -> None:
        """End the span of an attempt that sent no end event: it raised Ignore or Reject."""
        if self._attempts:  # usually empty: the attempt's end event already ended its span
            self._end_attempt(task, task_id, str(state))

    def _end_attempt(
        self,
        task: Task[Any, Any],
        task_id: str,
        state: str,
        *,
        retry: Attributes = None,
        exc: BaseException | None = None,
    ) -> None:
        attempt: _Attempt | None = self._attempts.pop(task_id)
        if attempt is None:
            return
        span, token, start = attempt
        if retry is not None:
            span.add_event(semconv.RETRY_EVENT, retry)
        if exc is not None:
            _record_error(span, exc)
        span.set_attribute(semconv.TASK_STATE, state)
        span.end()
        context.detach(token)
        self._durations.record(
            time.perf_counter() - start,
            {semconv.TASK_NAME: task.name, semconv.TASK_STATE: state},
        )


def _type_name(exc: BaseException) -> str:
    """Return the exception's class as ``module.QualName`` (only the name for built-ins)."""
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _record_error(span: Span, exc: BaseException) -> None:
    error_type = _type_name(exc)
    span.record_exception(exc)
    span.set_attribute(semconv.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"))


# Reading the spans back.


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
