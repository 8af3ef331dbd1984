"""The floors: what structlog and the OpenTelemetry SDK need for what an exporter writes per call.

An exporter's added cost per ``apply_async`` is measured against the work the library under it
cannot avoid for the same output: structlog rendering the call's line at info
(``invocation_triggered``, with its fields), and the SDK starting a PRODUCER span with the
call's nine attributes, setting the two the trigger adds, injecting W3C context into a dict,
ending the span and recording the two metric points of a sent message (the counter of sent
messages and the histogram of the publish's duration, with their attributes). A floor stands in
the harness where a task stands: its ``apply_async`` does the floor's work, then a plain Celery
task's ``apply_async``. It is measured in the same rounds as the contenders, alternating with
them, and the floor is its cost less the plain task's: the libraries' work as it costs beside a
publish (measured alone, in a tight loop of its own, the same work takes a half to two thirds as
long, its code and data hot in the caches).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog
from celery import signals as celery_signals
from opentelemetry import context, metrics, propagate, trace
from opentelemetry.trace import SpanKind
from structlog.contextvars import bind_contextvars, reset_contextvars

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["OpenTelemetryFloor", "StructlogFloor", "make_floors", "worker_floor"]

TASK_NAME = "bench.django"


class _Floor:
    """Stands where a task stands in the harness: ``apply_async`` does the floor's work and
    publishes ``task``, a plain Celery task."""

    def __init__(self, task: Any) -> None:
        self._task = task


class StructlogFloor(_Floor):
    """Renders the line of a call through the configured structlog processors."""

    _logger = structlog.get_logger("celery_events")

    def apply_async(self, args: tuple[Any, ...]) -> None:
        """Log what the structlog exporter logs at info for one triggered call, and publish it."""
        call_id = str(args[0])
        self._logger.info(
            "invocation_triggered",
            invocation_id=call_id,
            task_id=call_id,
            task_name=TASK_NAME,
            queue="celery",
            is_on_commit=False,
            eta=None,
        )
        self._task.apply_async(args=args)


_SENT = {
    "messaging.system": "celery",
    "messaging.operation.name": "apply_async",
    "messaging.destination.name": "celery",
    "celery_events.task.name": TASK_NAME,
    "server.address": "localhost",
    "server.port": 6379,
}


class OpenTelemetryFloor(_Floor):
    """Traces one call as a PRODUCER span through the configured SDK, publishing inside it."""

    _tracer = trace.get_tracer("benchmarks.floor")

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        meter = metrics.get_meter("benchmarks.floor")
        self._sent = meter.create_counter("benchmarks.floor.sent", unit="{message}")
        self._publish = meter.create_histogram("benchmarks.floor.publish", unit="s")

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
                "server.address": "localhost",
                "server.port": 6379,
            },
        )
        span.set_attributes(
            {"celery_events.invocation.outcome": "triggered", "messaging.message.id": call_id}
        )
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        start = time.perf_counter()
        self._task.apply_async(args=args, headers=headers)
        span.end()
        self._sent.add(1, _SENT)
        self._publish.record(
            time.perf_counter() - start, {**_SENT, "messaging.operation.type": "send"}
        )


def make_floors(plain_task: Any) -> dict[str, Any]:
    """Return the floors over ``plain_task`` by the name their contenders give as task."""
    return {
        "floor_structlog": StructlogFloor(plain_task),
        "floor_opentelemetry": OpenTelemetryFloor(plain_task),
    }


_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def worker_floor() -> Callable[[], None]:
    """Do, for each attempt of a plain task, what both exporters must do where a task runs.

    The SDK extracts the W3C context from the message (a ``traceparent`` put in every message at
    publish), starts the CONSUMER span with its attributes, attaches its context, counts the
    consumed message, records the queue wait and, when the attempt ends, sets its state, ends
    and detaches it and records its run time; structlog binds the ids, renders the started and
    succeeded lines, and resets them. Connected to Celery's publish, prerun and postrun signals;
    returns what disconnects.
    """
    tracer = trace.get_tracer("benchmarks.floor")
    meter = metrics.get_meter("benchmarks.floor")
    durations = meter.create_histogram("benchmarks.floor.duration", unit="s")
    consumed = meter.create_counter("benchmarks.floor.consumed", unit="{message}")
    waits = meter.create_histogram("benchmarks.floor.queue_wait", unit="s")
    consumed_attributes = {
        "messaging.system": "celery",
        "messaging.operation.name": "run",
        "messaging.destination.name": "celery",
        "celery_events.task.name": "bench.plain",
    }
    logger = structlog.get_logger("celery_events")
    attempts: dict[str, tuple[Any, Any, Any, float]] = {}

    def publish(headers: dict[str, Any], **_: Any) -> None:
        headers["traceparent"] = _TRACEPARENT

    def prerun(task_id: str, task: Any, **_: Any) -> None:
        request = task.request
        carried = propagate.extract({"traceparent": getattr(request, "traceparent", None) or ""})
        attributes = {
            "messaging.system": "celery",
            "messaging.operation.type": "process",
            "messaging.operation.name": "run",
            "messaging.message.id": task_id,
            "messaging.message.conversation_id": task_id,
            "celery_events.task.name": task.name,
            "celery_events.task.retries": request.retries,
            "messaging.destination.name": "celery",
            "celery_events.task.queue_wait": 0.001,
        }
        span = tracer.start_span(
            f"run {task.name}", context=carried, kind=SpanKind.CONSUMER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span, carried))
        consumed.add(1, consumed_attributes)
        waits.record(
            0.001, {"celery_events.task.name": task.name, "messaging.destination.name": "celery"}
        )
        tokens = bind_contextvars(invocation_id=task_id, task_id=task_id)
        logger.info(
            "task_started",
            invocation_id=task_id,
            task_id=task_id,
            task_name=task.name,
            queue="celery",
            retries=request.retries,
            queue_wait_ms=1.0,
        )
        attempts[task_id] = (span, token, tokens, time.perf_counter())

    def postrun(task_id: str, task: Any, state: str, **_: Any) -> None:
        attempt = attempts.pop(task_id, None)
        if attempt is None:  # started before the floor was switched on
            return
        span, token, tokens, start = attempt
        span.set_attribute("celery_events.task.state", state)
        span.end()
        context.detach(token)
        durations.record(
            time.perf_counter() - start, {**consumed_attributes, "celery_events.task.state": state}
        )
        logger.info(
            "task_succeeded",
            invocation_id=task_id,
            task_id=task_id,
            task_name=task.name,
            queue="celery",
            retries=0,
            duration_ms=round((time.perf_counter() - start) * 1000, 3),
        )
        reset_contextvars(**tokens)

    connections = (
        (celery_signals.before_task_publish, publish),
        (celery_signals.task_prerun, prerun),
        (celery_signals.task_postrun, postrun),
    )
    for signal, receiver in connections:
        signal.connect(receiver, weak=False)

    def switch_off() -> None:
        for signal, receiver in connections:
            signal.disconnect(receiver)

    return switch_off
