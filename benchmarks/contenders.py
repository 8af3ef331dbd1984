"""What is measured against what: each contender is a task plus the instrumentation it runs with.

A contender's ``switch_on`` connects its instrumentation and returns the function that
disconnects it, so that contenders alternate in one process without seeing each other's
receivers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
from celery import signals as celery_signals
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from benchmarks.floors import worker_floor
from celery_events.exporters import connect_exporters, disconnect_exporters

SwitchOff = Callable[[], None]


@dataclass(frozen=True)
class Contender:
    """A task (by its short name in ``benchmarks.apps``) run with some instrumentation."""

    name: str
    task: str
    switch_on: Callable[[], SwitchOff]


class DiscardingSpanProcessor(SpanProcessor):
    """Ends spans without exporting them: the export itself is not what we measure."""


def configure_sinks() -> None:
    """Send structlog lines to /dev/null and give OpenTelemetry an SDK that exports nothing.

    Both sides of each comparison (ours, and django-structlog with the OpenTelemetry Celery
    instrumentation) log and trace through these same sinks.
    """
    devnull = open(os.devnull, "w")  # noqa: PTH123, SIM115 - lives as long as the process
    structlog.configure(
        # Lines below info cost a no-op call, as in most production configurations.
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=devnull),
        cache_logger_on_first_use=True,
    )
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(DiscardingSpanProcessor())
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider())


def nothing() -> SwitchOff:
    """Connect nothing."""
    return lambda: None


def exporters(setting: object) -> Callable[[], SwitchOff]:
    """Connect celery-events' exporters as the EXPORTERS setting ``setting`` names them."""

    def switch_on() -> SwitchOff:
        connected = connect_exporters(setting)
        return lambda: disconnect_exporters(connected)

    return switch_on


def celery_instrumentation() -> SwitchOff:
    """Connect opentelemetry-instrumentation-celery and django-structlog's Celery receivers."""
    from django_structlog.celery.receivers import CeleryReceiver  # noqa: PLC0415
    from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415

    instrumentor = CeleryInstrumentor()
    instrumentor.instrument()
    receiver = CeleryReceiver()
    receiver.connect_worker_signals()
    connections = [
        (celery_signals.before_task_publish, receiver.receiver_before_task_publish),
        (celery_signals.after_task_publish, receiver.receiver_after_task_publish),
        (celery_signals.task_prerun, receiver.receiver_task_prerun),
        (celery_signals.task_retry, receiver.receiver_task_retry),
        (celery_signals.task_success, receiver.receiver_task_success),
        (celery_signals.task_failure, receiver.receiver_task_failure),
        (celery_signals.task_revoked, receiver.receiver_task_revoked),
        (celery_signals.task_unknown, receiver.receiver_task_unknown),
        (celery_signals.task_rejected, receiver.receiver_task_rejected),
    ]

    def switch_off() -> None:
        instrumentor.uninstrument()
        for signal, handler in connections:
            signal.disconnect(handler)

    return switch_off


PLAIN = Contender("celery Task", "plain", nothing)
DJANGO = Contender("DjangoTask", "django", nothing)
DJANGO_STRUCTLOG = Contender("DjangoTask + structlog", "django", exporters(["structlog"]))
DJANGO_OTEL = Contender("DjangoTask + opentelemetry", "django", exporters(["opentelemetry"]))
DJANGO_BOTH = Contender(
    "DjangoTask + both exporters", "django", exporters(["structlog", "opentelemetry"])
)
LEAN_LEVELS: Final = {"task_started": "debug"}
"""The structlog exporter's levels that leave one line per attempt at info, as per call."""
DJANGO_BOTH_LEAN = Contender(
    "DjangoTask + both, one line per call and attempt",
    "django",
    exporters({"structlog": {"levels": LEAN_LEVELS}, "opentelemetry": {}}),
)
PLAIN_INSTRUMENTED = Contender(
    "celery Task + otel-celery + django-structlog", "plain", celery_instrumentation
)
UNIQUE = Contender("DjangoTask unique (Redis store)", "unique", nothing)
FLOOR_STRUCTLOG = Contender("celery Task + floor: structlog's lines", "floor_structlog", nothing)
FLOOR_OTEL = Contender("celery Task + floor: the SDK's span", "floor_opentelemetry", nothing)
WORKER_FLOOR = Contender("celery Task + floor: an attempt's span and lines", "plain", worker_floor)

APPLY_CONTENDERS = (
    PLAIN,
    DJANGO,
    DJANGO_STRUCTLOG,
    DJANGO_OTEL,
    DJANGO_BOTH,
    DJANGO_BOTH_LEAN,
    PLAIN_INSTRUMENTED,
    FLOOR_STRUCTLOG,
    FLOOR_OTEL,
)
EXPORTER_FLOORS = ((DJANGO_STRUCTLOG, FLOOR_STRUCTLOG), (DJANGO_OTEL, FLOOR_OTEL))
"""Each exporter's contender and the floor its added cost is measured against."""
UNIQUE_CONTENDERS = (PLAIN, DJANGO, UNIQUE)
GATE_CONTENDERS = (DJANGO, UNIQUE)
WORKER_CONTENDERS = (
    PLAIN,
    DJANGO,
    UNIQUE,
    DJANGO_BOTH,
    DJANGO_BOTH_LEAN,
    PLAIN_INSTRUMENTED,
    WORKER_FLOOR,
)
