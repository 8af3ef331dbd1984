# ruff: noqa: PLC0415, ARG001 - the OTLP package is imported only when used; Celery's signature
"""The OpenTelemetry SDK set-up of docs/exporters.md: console or OTLP, in each process."""

# [start:sdk]
import os

from celery.signals import worker_process_init
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter


def set_up_opentelemetry(service_name: str) -> None:
    """Export spans and metrics to an OTLP collector, or to the console when none is named.

    The OTLP exporters (package opentelemetry-exporter-otlp-proto-http) read the collector's
    address from OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://otel-collector:4318.
    """
    span_exporter: SpanExporter
    metric_exporter: MetricExporter
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter, metric_exporter = OTLPSpanExporter(), OTLPMetricExporter()
    else:
        span_exporter, metric_exporter = ConsoleSpanExporter(), ConsoleMetricExporter()
    resource = Resource.create({"service.name": service_name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(metric_exporter)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


# [end:sdk]


# [start:worker]
@worker_process_init.connect(weak=False)
def set_up_opentelemetry_in_each_worker_process(**kwargs: object) -> None:
    set_up_opentelemetry("proj-worker")


# [end:worker]
