"""The metric instruments of the OpenTelemetry exporter: what it counts and times of messages.

The messaging conventions' sent and consumed messages and their operation and process durations,
and celery-events' own calls that sent no message and queue waits; the names and buckets are in
:mod:`celery_events.exporters.semconv`. The exporter records on them with the attributes of
:mod:`celery_events.exporters.otel_attributes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import semconv

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter

__all__ = ["MessagingMetrics"]


class MessagingMetrics:
    """The counters and histograms the exporter records its calls and attempts on.

    Args:
        meter: the meter of the exporter's instrumentation scope.
    """

    __slots__ = (
        "consumed",
        "operation_durations",
        "process_durations",
        "queue_waits",
        "sent",
        "unpublished",
    )

    def __init__(self, meter: Meter) -> None:
        self.sent = meter.create_counter(
            semconv.SENT_MESSAGES_METRIC,
            unit="{message}",
            description="Task messages sent to the broker, by task name and queue.",
        )
        self.operation_durations = meter.create_histogram(
            semconv.OPERATION_DURATION_METRIC,
            unit="s",
            description="Time to publish task messages, from trigger until the broker took them.",
            explicit_bucket_boundaries_advisory=semconv.MESSAGING_DURATION_BUCKETS,
        )
        self.consumed = meter.create_counter(
            semconv.CONSUMED_MESSAGES_METRIC,
            unit="{message}",
            description="Task messages delivered to an attempt, by task name and queue.",
        )
        self.process_durations = meter.create_histogram(
            semconv.PROCESS_DURATION_METRIC,
            unit="s",
            description="Run time of task attempts, by task name, queue and final state.",
            explicit_bucket_boundaries_advisory=semconv.MESSAGING_DURATION_BUCKETS,
        )
        self.unpublished = meter.create_counter(
            semconv.UNPUBLISHED_METRIC,
            unit="{invocation}",
            description=(
                "Task calls that sent no message, by task name and outcome (unique, ignored, "
                "or failed before the publish)."
            ),
        )
        self.queue_waits = meter.create_histogram(
            semconv.QUEUE_WAIT_METRIC,
            unit="s",
            description=(
                "Time task messages waited before their attempt started (since the call "
                "triggered, or since their eta), by task name and queue."
            ),
            explicit_bucket_boundaries_advisory=semconv.QUEUE_WAIT_BUCKETS,
        )
