"""A worker with both exporters on, whose spans, log lines and metrics the tests read from Redis.

A worker started with :data:`WORKER_ENV` and :func:`worker_args` (the ``exporters_worker``
fixture) imports this module. When it starts, it sends its finished spans (as the SDK's JSON)
and its structlog lines (as JSON, contextvars merged, tracebacks formatted) to Redis lists of
this session's prefix, where :func:`read_spans` and :func:`read_log_lines` find them; after each
task, the queue wait histogram's points recorded since the task before go to another, where
:func:`read_queue_waits` finds them.

With :data:`NEIGHBOUR_ENV_VAR` in its environment, the worker also runs one of the tools users
run beside the exporters, as they switch it on: ``instrumentor`` opentelemetry-instrumentation-
celery's ``CeleryInstrumentor``, ``django-structlog`` django-structlog's Celery receivers (what
its ``DjangoStructLogInitStep`` connects).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, NoReturn

import redis
import structlog
from celery.signals import task_postrun, worker_init
from django.conf import settings
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from celery_events.exporters.semconv import (
    MESSAGING_MESSAGE_CONVERSATION_ID,
    QUEUE_WAIT_METRIC,
    TASK_NAME,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan
    from structlog.typing import EventDict, WrappedLogger

QUEUE = "exporters"
"""The queue the exporters worker consumes; tests publish to it explicitly."""
EXPORTERS_ENV_VAR = "CELERY_EVENTS_TEST_EXPORTERS"
WORKER_ENV = {EXPORTERS_ENV_VAR: json.dumps(["structlog", "opentelemetry"])}
"""The environment that switches both exporters on in the worker (tests/settings.py reads it)."""
NEIGHBOUR_ENV_VAR = "CELERY_EVENTS_TEST_NEIGHBOUR"
INSTRUMENTOR = "instrumentor"
DJANGO_STRUCTLOG = "django-structlog"


def worker_args(name: str = "exporters") -> tuple[str, ...]:
    """Return the worker's command-line arguments: import this module; a node name of its own.

    The name is of this session's own too (on RabbitMQ, two workers of one name cannot both
    declare their remote-control queue).

    Args:
        name: what tells this worker from the session's other exporter workers.
    """
    return ("-I", __name__, "-n", f"{name}-{settings.KEY_PREFIX.rstrip(':')}@%h")


SPANS_KEY = f"{settings.KEY_PREFIX}exporter-spans"
LOG_KEY = f"{settings.KEY_PREFIX}exporter-log"
METRICS_KEY = f"{settings.KEY_PREFIX}exporter-queue-waits"

# Delta temporality: each task's push holds only what was recorded since the push before.
_METRIC_READER = InMemoryMetricReader(
    preferred_temporality={Histogram: AggregationTemporality.DELTA}
)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


class RedisSpanExporter(SpanExporter):
    """Pushes each finished span, as the SDK's JSON, to the Redis list ``SPANS_KEY``."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        _redis().rpush(SPANS_KEY, *(span.to_json(indent=None) for span in spans))
        return SpanExportResult.SUCCESS


def _push_log_line(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> NoReturn:
    # With the level under "log_level", as structlog.testing.capture_logs() shows lines.
    _redis().rpush(LOG_KEY, json.dumps({**event_dict, "log_level": method_name}, default=str))
    raise structlog.DropEvent


@worker_init.connect
def send_spans_and_log_lines_to_redis(**_: Any) -> None:
    """In a worker with exporters on: spans to ``SPANS_KEY``, structlog lines to ``LOG_KEY``.

    Any other worker that imports this module (one started in the tests' own process, say) is
    left alone.
    """
    if EXPORTERS_ENV_VAR not in os.environ:
        return
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedisSpanExporter()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_METRIC_READER]))
    task_postrun.connect(_push_queue_waits, weak=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            _push_log_line,
        ]
    )
    _switch_on_neighbour(os.environ.get(NEIGHBOUR_ENV_VAR))


_NEIGHBOURS: list[Any] = []
"""What a neighbour connected, kept: django-structlog connects its receivers weakly."""


def _switch_on_neighbour(neighbour: str | None) -> None:
    if neighbour == INSTRUMENTOR:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415

        CeleryInstrumentor().instrument()
    elif neighbour == DJANGO_STRUCTLOG:
        from django_structlog.celery.receivers import CeleryReceiver  # noqa: PLC0415

        receiver = CeleryReceiver()
        receiver.connect_worker_signals()
        _NEIGHBOURS.append(receiver)


def _push_queue_waits(**_: Any) -> None:
    data = _METRIC_READER.get_metrics_data()
    points = [
        {"attributes": dict(point.attributes or {}), "count": point.count, "sum": point.sum}
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == QUEUE_WAIT_METRIC
        for point in metric.data.data_points
    ]
    if points:
        _redis().rpush(METRICS_KEY, *(json.dumps(point) for point in points))


def read_queue_waits(client: redis.Redis, task_name: str) -> list[dict[str, Any]]:
    """Return the worker's queue wait points of one task: ``attributes``, ``count``, ``sum``."""
    points = (json.loads(raw) for raw in client.lrange(METRICS_KEY, 0, -1))
    return [point for point in points if point["attributes"].get(TASK_NAME) == task_name]


def read_trace(client: redis.Redis, trace_id: str) -> list[dict[str, Any]]:
    """Return the worker's finished spans of one trace (hex id), as the SDK's JSON, in end order."""
    spans = (json.loads(raw) for raw in client.lrange(SPANS_KEY, 0, -1))
    return [span for span in spans if span["context"]["trace_id"] == trace_id]


def read_spans(client: redis.Redis, invocation_id: str) -> list[dict[str, Any]]:
    """Return the worker's finished spans of one call, as the SDK's JSON, in end order."""
    spans = (json.loads(raw) for raw in client.lrange(SPANS_KEY, 0, -1))
    return [
        span
        for span in spans
        if span["attributes"].get(MESSAGING_MESSAGE_CONVERSATION_ID) == invocation_id
    ]


def read_log_lines(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """Return the worker's structlog lines bound to, or about, one task id, in order."""
    lines = (json.loads(raw) for raw in client.lrange(LOG_KEY, 0, -1))
    return [line for line in lines if line.get("task_id") == task_id]
