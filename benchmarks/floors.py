"""The floors: what structlog and the OpenTelemetry SDK need for what an exporter writes per call.

An exporter's added cost per ``apply_async`` is measured against the work the library under it
cannot avoid for the same output: structlog rendering the call's two lines (``invocation_applied``
and ``invocation_triggered``, with their fields), and the SDK starting a PRODUCER span with the
call's seven attributes, setting the two the trigger adds, injecting W3C context into a dict and
ending the span. A floor stands in the harness where a task stands: its ``apply_async`` does the
floor's work, then a plain Celery task's ``apply_async``. It is measured in the same rounds as
the contenders, alternating with them, and the floor is its cost less the plain task's: the
libraries' work as it costs beside a publish (measured alone, in a tight loop of its own, the
same work takes a half to two thirds as long, its code and data hot in the caches).
"""

from __future__ import annotations

from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

__all__ = ["OpenTelemetryFloor", "StructlogFloor", "make_floors"]

TASK_NAME = "bench.django"


class StructlogFloor:
    """Renders the two lines of a call through the configured structlog processors.

    Args:
        task: the plain Celery task published after the lines.
    """

    def __init__(self, task: Any) -> None:
        self._task = task
        self._logger = structlog.get_logger("celery_events")

    def apply_async(self, args: tuple[Any, ...]) -> None:
        """Log what the structlog exporter logs for one triggered call, and publish it."""
        call_id = str(args[0])
        self._logger.info(
            "invocation_applied",
            invocation_id=call_id,
            task_id=None,
            task_name=TASK_NAME,
            queue="celery",
            is_on_commit=False,
        )
        self._logger.info(
            "invocation_triggered",
            invocation_id=call_id,
            task_id=call_id,
            task_name=TASK_NAME,
            queue="celery",
            eta=None,
        )
        self._task.apply_async(args=args)


class OpenTelemetryFloor:
    """Traces one call as a PRODUCER span through the configured SDK.

    Args:
        task: the plain Celery task published inside the span.
    """

    def __init__(self, task: Any) -> None:
        self._task = task
        self._tracer = trace.get_tracer("benchmarks.floor")

    def apply_async(self, args: tuple[Any, ...]) -> None:
        """Start, complete and propagate the span the OpenTelemetry exporter makes; publish."""
        call_id = str(args[0])
        span = self._tracer.start_span(
            f"apply_async {TASK_NAME}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "celery",
                "messaging.operation.type": "send",
                "messaging.operation.name": "apply_async",
                "messaging.destination.name": "celery",
                "messaging.message.conversation_id": call_id,
                "celery_events.task.name": TASK_NAME,
                "celery_events.invocation.on_commit": False,
            },
        )
        span.set_attributes(
            {"celery_events.invocation.outcome": "triggered", "messaging.message.id": call_id}
        )
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        self._task.apply_async(args=args, headers=headers)
        span.end()


def make_floors(plain_task: Any) -> dict[str, Any]:
    """Return the floors over ``plain_task`` by the name their contenders give as task."""
    return {
        "floor_structlog": StructlogFloor(plain_task),
        "floor_opentelemetry": OpenTelemetryFloor(plain_task),
    }
