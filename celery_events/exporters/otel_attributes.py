"""The attributes the OpenTelemetry exporter writes on its spans and metric points, and errors.

The attributes of a call's, an attempt's and a timed-out wait's span, made from what their event
tells; the broker's address; the attributes of the metric points of a task's messages (made once
and shared, as calls and attempts repeat them); and an exception's type and its record on a span.
The names are those of :mod:`celery_events.exporters.semconv`.
"""

from __future__ import annotations

from functools import cache, lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Status, StatusCode

from . import semconv

if TYPE_CHECKING:
    from collections.abc import Mapping

    from celery import Celery
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AnyValue

__all__ = [
    "attempt_metric_attributes",
    "attempt_span_attributes",
    "broker",
    "call_span_attributes",
    "publish_metric_attributes",
    "record_error",
    "timeout_span_attributes",
    "type_name",
]


def call_span_attributes(
    task_name: str, invocation_id: str, operation: str, options: Mapping[str, Any]
) -> dict[str, AnyValue]:
    """Return the attributes of a call's PRODUCER span, known at apply; its outcome comes later.

    Args:
        task_name: the task's name.
        invocation_id: the call's invocation id.
        operation: ``apply_async`` or ``apply``.
        options: the call's resolved options (``queue``, ``is_on_commit``).
    """
    return {
        semconv.MESSAGING_SYSTEM: semconv.CELERY,
        semconv.MESSAGING_OPERATION_TYPE: semconv.SEND,
        semconv.MESSAGING_OPERATION_NAME: operation,
        semconv.MESSAGING_DESTINATION_NAME: options["queue"],
        semconv.MESSAGING_MESSAGE_CONVERSATION_ID: invocation_id,
        semconv.TASK_NAME: task_name,
        semconv.INVOCATION_ON_COMMIT: options["is_on_commit"],
    }


def attempt_span_attributes(
    task_name: str, task_id: str, invocation_id: str, retries: int, queue: str | None
) -> dict[str, AnyValue]:
    """Return the attributes of an attempt's CONSUMER span, known when it starts.

    Args:
        task_name: the task's name.
        task_id: the attempt's task id.
        invocation_id: the invocation id of the call it runs.
        retries: how many attempts came before it.
        queue: the queue its message came from; None when eager, where no queue is involved.
    """
    attributes: dict[str, AnyValue] = {
        semconv.MESSAGING_SYSTEM: semconv.CELERY,
        semconv.MESSAGING_OPERATION_TYPE: semconv.PROCESS,
        semconv.MESSAGING_OPERATION_NAME: semconv.RUN,
        semconv.MESSAGING_MESSAGE_ID: task_id,
        semconv.MESSAGING_MESSAGE_CONVERSATION_ID: invocation_id,
        semconv.TASK_NAME: task_name,
        semconv.TASK_RETRIES: retries,
    }
    if queue:
        attributes[semconv.MESSAGING_DESTINATION_NAME] = queue
    return attributes


def timeout_span_attributes(
    task_name: str, invocation_id: str, task_id: str | None
) -> dict[str, AnyValue]:
    """Return the attributes of the span of a caller's wait for a result that timed out.

    Args:
        task_name: the task's name.
        invocation_id: the invocation id of the call waited for.
        task_id: its task id; None when it has none.
    """
    attributes: dict[str, AnyValue] = {
        semconv.MESSAGING_MESSAGE_CONVERSATION_ID: invocation_id,
        semconv.TASK_NAME: task_name,
    }
    if task_id is not None:
        attributes[semconv.MESSAGING_MESSAGE_ID] = task_id
    return attributes


@cache
def broker(app: Celery) -> Mapping[str, AnyValue]:
    """Return ``server.address`` and ``server.port`` of the broker ``app`` publishes to.

    Read once per app, from its write connection's URL (``broker_write_url`` or ``broker_url``):
    a call given a connection of its own is reported with its app's broker.

    Args:
        app: the Celery app of the task called.
    """
    with app.connection_for_write() as connection:
        host, port = connection.hostname, connection.port
    server: dict[str, AnyValue] = {}
    if host:
        server[semconv.SERVER_ADDRESS] = host
        if port:
            server[semconv.SERVER_PORT] = int(port)
    return server


@lru_cache(maxsize=1024)
def publish_metric_attributes(
    app: Celery, task_name: str, operation: AnyValue, queue: str
) -> tuple[Mapping[str, AnyValue], Mapping[str, AnyValue]]:
    """Return the metric attributes of a task's sent messages, and of their publish.

    Made once for each task, operation and queue, as calls repeat them.

    Args:
        app: the Celery app of the task, whose broker is named.
        task_name: the task's name.
        operation: ``apply_async`` or ``apply``.
        queue: the queue the message is sent to.
    """
    sent = {
        semconv.MESSAGING_SYSTEM: semconv.CELERY,
        semconv.MESSAGING_OPERATION_NAME: operation,
        semconv.MESSAGING_DESTINATION_NAME: queue,
        semconv.TASK_NAME: task_name,
        **broker(app),
    }
    publish = {**sent, semconv.MESSAGING_OPERATION_TYPE: semconv.SEND}
    return MappingProxyType(sent), MappingProxyType(publish)


@lru_cache(maxsize=1024)
def attempt_metric_attributes(
    task_name: str, queue: str | None
) -> tuple[Mapping[str, AnyValue], Mapping[str, AnyValue]]:
    """Return the metric attributes of a task's consumed messages, and of their queue wait.

    Made once for each task and queue (None when eager), as attempts repeat them.

    Args:
        task_name: the task's name.
        queue: the queue the message came from; None when eager.
    """
    wait: dict[str, AnyValue] = {semconv.TASK_NAME: task_name}
    consumed: dict[str, AnyValue] = {
        semconv.MESSAGING_SYSTEM: semconv.CELERY,
        semconv.MESSAGING_OPERATION_NAME: semconv.RUN,
        semconv.TASK_NAME: task_name,
    }
    if queue:
        consumed[semconv.MESSAGING_DESTINATION_NAME] = queue
        wait[semconv.MESSAGING_DESTINATION_NAME] = queue
    return MappingProxyType(consumed), MappingProxyType(wait)


def type_name(exc: BaseException) -> str:
    """Return the exception's class as ``module.QualName`` (only the name for built-ins)."""
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def record_error(span: Span, exc: BaseException, error_type: str) -> None:
    """Record ``exc`` on ``span`` as an exception event, its ``error.type`` and ERROR status.

    Args:
        span: an open span.
        exc: the exception that ended what the span covers.
        error_type: the exception's :func:`type_name`.
    """
    span.record_exception(exc)
    span.set_attribute(semconv.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"))
