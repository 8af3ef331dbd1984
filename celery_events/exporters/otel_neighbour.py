"""The OpenTelemetry exporter's work beside opentelemetry-instrumentation-celery's instrumentor.

Beside the instrumentor, its spans are the spans of every message it sees: the exporter writes a
triggered call's attributes on the instrumentor's PRODUCER span of the call's publish and an
attempt's on its CONSUMER span, instead of making spans of its own, and writes the call's trace
context back into a retry's message, so that every attempt is a child of the call's span, as
without the instrumentor. The instrumentor itself is found by
:mod:`celery_events.exporters.neighbours`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import signals as celery_signals
from opentelemetry import propagate, trace

from celery_events.headers import INVOCATION_ID_HEADER

from .otel_records import Attempt

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

    from celery import Task
    from opentelemetry.context import Context
    from opentelemetry.util.types import AnyValue

    from .base import InFlight
    from .neighbours import CeleryInstrumentation
    from .otel_records import Publish

__all__ = ["BesideInstrumentor"]


class BesideInstrumentor:
    """Puts the OpenTelemetry exporter's calls and attempts on the instrumentor's spans.

    Args:
        instrumentation: the process's Celery instrumentation.
        publishing: the exporter's triggered calls between trigger and publish, by invocation id.
        attempts: the exporter's running attempts, by task id.
    """

    __slots__ = ("_attempts", "_followed", "_instrumentation", "_publishing")

    def __init__(
        self,
        instrumentation: CeleryInstrumentation,
        publishing: InFlight[str | None, Publish],
        attempts: InFlight[str | None, Attempt],
    ) -> None:
        self._instrumentation = instrumentation
        self._publishing = publishing
        self._attempts = attempts
        self._followed = 0
        """How many receivers ``before_task_publish`` had when :meth:`follow` last looked."""

    @property
    def active(self) -> bool:
        """Whether the instrumentor traces Celery in this process now."""
        return self._instrumentation.active

    def disconnect(self) -> None:
        """Disconnect the receiver :meth:`follow` connected, if it did."""
        celery_signals.before_task_publish.disconnect(self.publishing_message)
        self._followed = 0

    def follow(self) -> None:
        """Have Celery call the exporter after the instrumentor when a message is published.

        Connected only beside the instrumentor: any receiver of ``before_task_publish`` costs
        every publish a dispatch. The instrumentor writes its publish's trace context into the
        message; the exporter, run after it, finds the instrumentor's span and writes the call's
        context back into a retry's message. Celery calls receivers in the order they were
        connected, so the exporter's connects again, last, where it is not after the
        instrumentor's (looked at again when the receivers change).
        """
        signal = celery_signals.before_task_publish
        if len(signal.receivers) == self._followed:
            return
        receiver = self.publishing_message
        if not self._instrumentation.runs_after(signal, receiver):
            signal.disconnect(receiver)
            signal.connect(receiver, weak=False)
        self._followed = len(signal.receivers)

    def publishing_message(
        self, *, headers: MutableMapping[str, Any] | None = None, **_: Any
    ) -> None:
        """Find the instrumentor's span of a message being published (before the broker has it).

        A triggered call's span gets the call's attributes; a retry's message gets its call's
        trace context back, so that the next attempt is the call's child, beside the others.
        Receives Celery's ``before_task_publish``.

        Args:
            headers: the message's headers.
        """
        if not headers or not self.active:
            return
        task_id = headers.get("id")
        if self._publishing:
            publish = self._publishing.get(headers.get(INVOCATION_ID_HEADER) or task_id)
            if publish is not None and publish.span is None:
                self.adopt_publish(publish, task_id)
        if self._attempts:
            attempt = self._attempts.get(task_id)
            if attempt is not None and attempt.token is None:  # published inside its attempt
                propagate.inject(headers, context=attempt.carried)

    def adopt_publish(self, publish: Publish, task_id: str | None) -> None:
        """Give the instrumentor's open span of the call's publish the call's attributes.

        Args:
            publish: the triggered call, which keeps the span once found.
            task_id: the task id of its message; None finds no span.
        """
        if task_id is None:
            return
        span = self._instrumentation.span(publish.task, task_id, publish=True)
        if span is not None:
            span.set_attributes(publish.call[3])
            # Read back by a timeout's span, which joins the call's trace.
            propagate.inject(publish.headers, context=trace.set_span_in_context(span))
            publish.span = span

    def adopt_attempt(
        self,
        task: Task[Any, Any],
        task_id: str,
        attributes: Mapping[str, AnyValue],
        carried: Context,
        metric: Mapping[str, AnyValue],
    ) -> bool:
        """Give the instrumentor's open span of an attempt the attempt's attributes, and keep it.

        Args:
            task: the task the attempt runs.
            task_id: the attempt's task id.
            attributes: the attempt's span attributes.
            carried: the trace context its message carried.
            metric: the attributes of its consumed message's metric point.

        Returns:
            Whether the instrumentor's span of the attempt is open (else the exporter makes its
            own span).
        """
        span = self._instrumentation.span(task, task_id, publish=False)
        if span is None:
            return False
        span.set_attributes(attributes)
        self._attempts.add(task_id, Attempt(span, None, carried, metric))
        self.follow()
        return True
