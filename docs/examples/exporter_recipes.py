# ruff: noqa: S101
"""Recipes of docs/exporters.md: a test of log lines, a structlog set-up, a span recorder."""

import structlog
from django.test import override_settings
from notifications.sms import send_sms
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


# [start:testing]
@override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["structlog"])
def test_retry_is_logged() -> None:
    with structlog.testing.capture_logs() as lines:
        send_sms.delay("+420123456789", "Your parcel is on its way")

    assert "task_retrying" in [line["event"] for line in lines]


# [end:testing]


def configure_logging() -> None:
    """Render structlog lines for people, with the ids the exporter binds while a task runs."""
    # [start:structlog]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )
    # [end:structlog]


def record_spans() -> InMemorySpanExporter:
    """Keep every finished span in memory, to print them with format_span_tree()."""
    # [start:spans]
    spans = InMemorySpanExporter()
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):  # no OpenTelemetry SDK set up yet
        tracer_provider = TracerProvider()
        trace.set_tracer_provider(tracer_provider)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    # [end:spans]
    return spans
