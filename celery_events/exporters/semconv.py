"""The names the OpenTelemetry exporter writes: attribute keys and values, span, event and metrics.

Keys and metrics of the OpenTelemetry semantic conventions (:data:`SCHEMA_URL` names the version:
messaging, server, error and exception conventions) are named here once, as the conventions
spell them; so are celery-events' own keys and metrics, under ``celery_events.``, for what the
conventions have no name for. Only opentelemetry-api is a dependency, so the names are not
imported from opentelemetry-semantic-conventions; a test checks each against its registry.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "APPLY",
    "APPLY_ASYNC",
    "CELERY",
    "CONSUMED_MESSAGES_METRIC",
    "ERROR_TYPE",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_TYPE",
    "FAILED",
    "GET",
    "IGNORED",
    "INVOCATION_ON_COMMIT",
    "INVOCATION_OUTCOME",
    "MESSAGING_DESTINATION_NAME",
    "MESSAGING_DURATION_BUCKETS",
    "MESSAGING_MESSAGE_CONVERSATION_ID",
    "MESSAGING_MESSAGE_ID",
    "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE",
    "MESSAGING_SYSTEM",
    "OPERATION_DURATION_METRIC",
    "PROCESS",
    "PROCESS_DURATION_METRIC",
    "QUEUE_WAIT_BUCKETS",
    "QUEUE_WAIT_METRIC",
    "RETRY_ETA",
    "RETRY_EVENT",
    "RUN",
    "SCHEMA_URL",
    "SCOPE",
    "SEND",
    "SENT_MESSAGES_METRIC",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "TASK_NAME",
    "TASK_QUEUE_WAIT",
    "TASK_RETRIES",
    "TASK_STATE",
    "TRIGGERED",
    "UNIQUE",
    "UNPUBLISHED_METRIC",
]

SCOPE: Final = "celery_events"
"""The instrumentation scope of the tracer and the meter."""
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.44.0"
"""The semantic conventions version whose names and values the exporter writes."""

# Semantic conventions: messaging.
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_MESSAGE_CONVERSATION_ID: Final = "messaging.message.conversation_id"

# Semantic conventions: the broker, as the publisher knows it.
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# Semantic conventions: errors and exceptions.
ERROR_TYPE: Final = "error.type"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"

# celery-events' own keys.
TASK_NAME: Final = "celery_events.task.name"
"""The task's registered name, on every span and metric point."""
TASK_RETRIES: Final = "celery_events.task.retries"
"""How many times the task had been retried before this attempt (0 for the first)."""
TASK_STATE: Final = "celery_events.task.state"
"""How an attempt ended: Celery's state name, SUCCESS, FAILURE or RETRY."""
INVOCATION_OUTCOME: Final = "celery_events.invocation.outcome"
"""What became of a call: :data:`TRIGGERED`, :data:`UNIQUE`, :data:`IGNORED` or :data:`FAILED`."""
INVOCATION_ON_COMMIT: Final = "celery_events.invocation.on_commit"
"""True for a call that waited for its transaction to commit (``apply_async_on_commit``)."""
TASK_QUEUE_WAIT: Final = "celery_events.task.queue_wait"
"""Seconds the attempt's message waited before the attempt started: since the call triggered, or
since its ``eta`` (a countdown, a retry). Absent for an eager attempt."""
RETRY_ETA: Final = "celery_events.retry.eta"
"""When the next attempt is due (ISO 8601), on the :data:`RETRY_EVENT` span event."""

# Values.
CELERY: Final = "celery"
"""The ``messaging.system``: Celery is the client; the broker behind it is Celery's business."""
SEND: Final = "send"
PROCESS: Final = "process"
APPLY_ASYNC: Final = "apply_async"
APPLY: Final = "apply"
RUN: Final = "run"
GET: Final = "get"
FAILED: Final = "failed"
"""The outcome of a call that could not be triggered or published (``invocation_failure``)."""
TRIGGERED: Final = "triggered"
UNIQUE: Final = "unique"
IGNORED: Final = "ignored"

RETRY_EVENT: Final = "retry"
"""The span event of an attempt that will be retried."""

# Metrics of the semantic conventions.
SENT_MESSAGES_METRIC: Final = "messaging.client.sent.messages"
"""Counter of the messages of triggered calls, by task and queue (``error.type`` when the publish
failed)."""
OPERATION_DURATION_METRIC: Final = "messaging.client.operation.duration"
"""Histogram of the publish of a triggered call, from its trigger until the broker took it."""
CONSUMED_MESSAGES_METRIC: Final = "messaging.client.consumed.messages"
"""Counter of the messages delivered to an attempt, by task and queue."""
PROCESS_DURATION_METRIC: Final = "messaging.process.duration"
"""Histogram of attempt run times, by task, queue and :data:`TASK_STATE`."""
MESSAGING_DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""The bucket boundaries (seconds) the conventions advise for the messaging durations."""

# celery-events' own metrics, where the conventions have none.
UNPUBLISHED_METRIC: Final = "celery_events.invocations.unpublished"
"""Counter of the calls that sent no message, by task and :data:`INVOCATION_OUTCOME`: joined a
call in progress (:data:`UNIQUE`), :data:`IGNORED`, or :data:`FAILED` before the publish."""
QUEUE_WAIT_METRIC: Final = "celery_events.task.queue_wait"
"""Histogram of :data:`TASK_QUEUE_WAIT`, by :data:`TASK_NAME` and ``messaging.destination.name``.

The messaging semantic conventions have no metric for the time a message waits before it is
processed, so it is named as celery-events' own."""
QUEUE_WAIT_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
"""The queue wait histogram's bucket boundaries (seconds): a message may wait an hour."""
