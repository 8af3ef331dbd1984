"""The OpenTelemetry exporter: a trace for every task call, joined across processes, and metrics.

A call is a PRODUCER span from apply to its outcome, so an on-commit call shows its wait for the
commit. A call that triggers writes its W3C trace context into the message headers, and its span
ends when the broker has taken the message (Celery's ``after_task_publish``), or when the attempt
starts for an eager call; a call that joins or is ignored ends it at once; a call that fails to
trigger or publish ends it as an error. Each attempt where the task runs is a CONSUMER span
whose parent is the producer span (or which links to it, with ``link_to_producer``). A retry is a
span event, a failure an exception with ERROR status, and a caller's wait that times out an ERROR
span on the caller's trace.

Beside opentelemetry-instrumentation-celery, the instrumentor's spans are the spans of every
message it sees: the exporter writes its attributes on the instrumentor's PRODUCER span of a
triggered call's publish and on its CONSUMER span of each attempt, and makes its own spans only
for what the instrumentor cannot see (a call that joins, is ignored or fails before its publish,
an eager call, a timed-out wait). A retry's message then carries the call's trace context again,
so that every attempt is a child of the call's span, as without the instrumentor
(:mod:`celery_events.exporters.otel_neighbour`).

Only opentelemetry-api is used: without an SDK configured, nothing is recorded. The names are in
:mod:`celery_events.exporters.semconv` and ``docs/exporters.md``. :func:`format_span_tree`, from
:mod:`celery_events.exporters.span_tree`, draws the finished spans.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import signals as celery_signals
from celery import states
from opentelemetry import context, metrics, propagate, trace
from opentelemetry.trace import Link, SpanKind

from celery_events import signals
from celery_events.__about__ import __version__
from celery_events.headers import INVOCATION_ID_HEADER, queue_wait

from . import semconv
from .base import DEFAULT_MAX_IN_FLIGHT, SignalExporter, check_option
from .neighbours import celery_instrumentation
from .otel_attributes import (
    attempt_metric_attributes,
    attempt_span_attributes,
    broker,
    call_span_attributes,
    publish_metric_attributes,
    record_error,
    timeout_span_attributes,
    type_name,
)
from .otel_context import REQUEST_HEADERS
from .otel_metrics import MessagingMetrics
from .otel_neighbour import BesideInstrumentor
from .otel_records import Attempt, Publish
from .span_tree import format_span_tree

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from celery import Task
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AnyValue, Attributes

    from .otel_records import Call

__all__ = ["OpenTelemetryExporter", "format_span_tree"]


class OpenTelemetryExporter(SignalExporter):
    """Traces every task call and attempt, and records the messaging metrics of calls and attempts.

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
        self.link_to_producer = link_to_producer
        self._calls = self.in_flight(max_in_flight)
        self._publishing = self.in_flight(max_in_flight)
        self._attempts = self.in_flight(max_in_flight)
        instrumentation = celery_instrumentation()
        self._beside = (
            None
            if instrumentation is None
            else BesideInstrumentor(instrumentation, self._publishing, self._attempts)
        )
        # Proxies until the application sets its providers, then the real thing: getting them
        # here, once, is right even when the SDK is configured after Django started.
        self._tracer = trace.get_tracer(semconv.SCOPE, __version__, schema_url=semconv.SCHEMA_URL)
        self._metrics = MessagingMetrics(
            metrics.get_meter(semconv.SCOPE, __version__, schema_url=semconv.SCHEMA_URL)
        )
        receivers: dict[Any, Any] = {
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
        self.receivers = receivers

    def disconnect(self) -> None:
        """Disconnect every receiver, the one connected beside the instrumentor too."""
        super().disconnect()
        if self._beside is not None:
            self._beside.disconnect()

    def _active_beside(self) -> BesideInstrumentor | None:
        """Return the work beside the instrumentor when it traces this process now, else None."""
        beside = self._beside
        return beside if beside is not None and beside.active else None

    # The caller's side: one PRODUCER span per call.

    def _applied(
        self, task: Task[Any, Any], *, invocation_id: str, options: Mapping[str, Any], **_: Any
    ) -> None:
        operation = semconv.APPLY_ASYNC if options["is_async"] else semconv.APPLY
        attributes = call_span_attributes(task.name, invocation_id, operation, options)
        call = (f"{operation} {task.name}", time.time_ns(), context.get_current(), attributes)
        self._calls.add(invocation_id, call)

    def _outcome(self, outcome: str, invocation_id: str, task_id: str | None) -> Call | None:
        """Return the call, no longer waiting for an outcome, with its outcome in its attributes."""
        call: Call | None = self._calls.pop(invocation_id)
        if call is not None:
            attributes = call[3]
            attributes[semconv.INVOCATION_OUTCOME] = outcome
            if task_id is not None:
                attributes[semconv.MESSAGING_MESSAGE_ID] = task_id
        return call

    def _start_call_span(self, call: Call) -> Span:
        name, start, parent, attributes = call
        return self._tracer.start_span(
            name, context=parent, kind=SpanKind.PRODUCER, attributes=attributes, start_time=start
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
        """Write the trace context into the message's headers; the span ends once published.

        Beside the instrumentor, a call it will publish starts no span: the instrumentor's
        span of the publish gets the call's attributes.
        """
        call = self._outcome(semconv.TRIGGERED, invocation_id, task_id)
        if call is None:
            return
        attributes = call[3]
        attributes.update(broker(task.app))
        metric = publish_metric_attributes(
            task.app, task.name, attributes[semconv.MESSAGING_OPERATION_NAME], options["queue"]
        )
        headers = options["headers"]
        beside = self._active_beside()
        if beside is not None and options["is_async"] and not task.app.conf.task_always_eager:
            beside.follow()
            self._publishing.add(invocation_id, Publish(task, call, metric, headers, None))
            return
        span = self._start_call_span(call)
        propagate.inject(headers, context=trace.set_span_in_context(span))
        self._publishing.add(invocation_id, Publish(task, call, metric, headers, span))

    def _published(
        self, *, sender: str, headers: Mapping[str, Any] | None = None, **_: Any
    ) -> None:
        """End the PRODUCER span of a triggered call whose message the broker has taken."""
        if self._publishing and headers:  # usually empty: a call is between trigger and publish
            # A call's invocation id is its task id unless a header names it.
            invocation_id = headers.get(INVOCATION_ID_HEADER) or headers.get("id")
            self._end_published(invocation_id, headers.get("id"))

    def _end_published(self, invocation_id: str | None, task_id: str | None) -> None:
        publish: Publish | None = self._publishing.pop(invocation_id)
        if publish is None:
            return
        # The instrumentor's receivers run after this one.
        if publish.span is None and self._beside is not None:
            self._beside.adopt_publish(publish, task_id)
        sent, operation = publish.metric
        self._metrics.sent.add(1, sent)
        self._metrics.operation_durations.record(time.perf_counter() - publish.start, operation)
        if publish.owned and publish.span is not None:
            publish.span.end()

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
        """Make the PRODUCER span of a call that joined a running call or was ignored."""
        self._metrics.unpublished.add(
            1, {semconv.TASK_NAME: task.name, semconv.INVOCATION_OUTCOME: outcome}
        )
        call = self._outcome(outcome, invocation_id, task_id)
        if call is not None:
            span = self._start_call_span(call)
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
        """End the PRODUCER span of a call that could not be triggered or published, in error.

        Beside the instrumentor, its span of a publish that failed never ends: the exporter
        makes the call's span.
        """
        error_type = type_name(exc)
        publish: Publish | None = self._publishing.pop(invocation_id)
        if publish is None:  # failed before the publish
            self._metrics.unpublished.add(
                1, {semconv.TASK_NAME: task.name, semconv.INVOCATION_OUTCOME: semconv.FAILED}
            )
            call = self._outcome(semconv.FAILED, invocation_id, task_id)
            span = None if call is None else self._start_call_span(call)
        else:  # triggered, then the publish failed
            sent, operation = publish.metric
            self._metrics.sent.add(1, {**sent, semconv.ERROR_TYPE: error_type})
            self._metrics.operation_durations.record(
                time.perf_counter() - publish.start, {**operation, semconv.ERROR_TYPE: error_type}
            )
            publish.call[3][semconv.INVOCATION_OUTCOME] = semconv.FAILED
            span = publish.span if publish.owned else None
            if span is None:
                span = self._start_call_span(publish.call)
            else:
                span.set_attribute(semconv.INVOCATION_OUTCOME, semconv.FAILED)
        if span is not None:
            record_error(span, exc, error_type)
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
        span = self._tracer.start_span(
            f"{semconv.GET} {task.name}",
            context=propagate.extract(options.get("headers") or {}),
            kind=SpanKind.INTERNAL,
            attributes=timeout_span_attributes(task.name, invocation_id, task_id),
        )
        record_error(span, ex, type_name(ex))
        span.end()

    # Where the task runs: one CONSUMER span per attempt.

    def _started(self, task: Task[Any, Any], *, invocation_id: str, task_id: str, **_: Any) -> None:
        if self._publishing:  # an eager call's attempt starts where it was triggered
            self._end_published(invocation_id, None)
        request = task.request
        carried = propagate.extract(request, getter=REQUEST_HEADERS)
        queue = (request.delivery_info or {}).get("routing_key")
        attributes = attempt_span_attributes(
            task.name, task_id, invocation_id, request.retries, queue
        )
        metric, wait_attributes = attempt_metric_attributes(task.name, queue)
        wait = queue_wait(request, time.time())
        if wait is not None:
            attributes[semconv.TASK_QUEUE_WAIT] = wait
            self._metrics.queue_waits.record(wait, wait_attributes)
        self._metrics.consumed.add(1, metric)
        beside = self._active_beside()
        # Where the instrumentor's span of the attempt is open, ours is not made.
        if beside is not None and beside.adopt_attempt(task, task_id, attributes, carried, metric):
            return
        parent = carried
        links: tuple[Link, ...] = ()
        if self.link_to_producer:
            producer = trace.get_current_span(carried).get_span_context()
            parent = trace.set_span_in_context(trace.INVALID_SPAN, carried)
            links = (Link(producer),) if producer.is_valid else ()
        span = self._tracer.start_span(
            f"{semconv.RUN} {task.name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        token = context.attach(trace.set_span_in_context(span, carried))
        self._attempts.add(task_id, Attempt(span, token, carried, metric))

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
            retry[semconv.EXCEPTION_TYPE] = type_name(exc)
            retry[semconv.EXCEPTION_MESSAGE] = str(exc)
        self._end_attempt(task_id, states.RETRY, retry=retry)

    def _failed(self, task: Task[Any, Any], *, task_id: str, exc: BaseException, **_: Any) -> None:
        self._end_attempt(task_id, states.FAILURE, exc=exc)

    def _succeeded(self, task: Task[Any, Any], *, task_id: str, **_: Any) -> None:
        self._end_attempt(task_id, states.SUCCESS)

    def _postrun(self, *, task_id: str, state: str | None, **_: Any) -> None:
        """End the span of an attempt that sent no end event: it raised Ignore or Reject."""
        if self._attempts:  # usually empty: the attempt's end event already ended its span
            self._end_attempt(task_id, str(state))

    def _end_attempt(
        self,
        task_id: str,
        state: str,
        *,
        retry: Attributes = None,
        exc: BaseException | None = None,
    ) -> None:
        """End an attempt's span and record its run time.

        The instrumentor's span is left to the instrumentor to end, and its failure to record:
        the exporter adds the state, the retry and the error type.
        """
        attempt: Attempt | None = self._attempts.pop(task_id)
        if attempt is None:
            return
        span = attempt.span
        if retry is not None:
            span.add_event(semconv.RETRY_EVENT, retry)
        metric = {**attempt.metric, semconv.TASK_STATE: state}
        if exc is not None:
            error_type = type_name(exc)
            metric[semconv.ERROR_TYPE] = error_type
            if attempt.token is None:
                span.set_attribute(semconv.ERROR_TYPE, error_type)
            else:
                record_error(span, exc, error_type)
        span.set_attribute(semconv.TASK_STATE, state)
        if attempt.token is not None:
            span.end()
            context.detach(attempt.token)
        self._metrics.process_durations.record(time.perf_counter() - attempt.start, metric)
