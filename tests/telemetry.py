"""The OpenTelemetry SDK of the tests' own process: finished spans and metrics kept in memory.

OpenTelemetry lets a process set its tracer and meter providers once, so they are set when this
module is first imported, for the whole session; the fixtures empty them around each test.
Import the fixtures into a test module to use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SPAN_EXPORTER = InMemorySpanExporter()
# Delta temporality: each read returns what was recorded since the read before.
METRIC_READER = InMemoryMetricReader(
    preferred_temporality={
        Counter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA,
    }
)

_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(SPAN_EXPORTER))
trace.set_tracer_provider(_tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[METRIC_READER]))


@pytest.fixture(name="spans")
def fixture_spans() -> Iterator[InMemorySpanExporter]:
    """The spans finished while the test runs (``spans.get_finished_spans()``)."""
    SPAN_EXPORTER.clear()
    yield SPAN_EXPORTER
    SPAN_EXPORTER.clear()


@pytest.fixture(name="read_metrics")
def fixture_read_metrics() -> Callable[[], dict[str, list[tuple[dict[str, Any], Any]]]]:
    """Read the metrics recorded since the test started (or since the last read), by name.

    Each metric is a sorted list of ``(attributes, value)`` points: the value for a counter,
    ``(count, sum)`` for a histogram.
    """
    METRIC_READER.get_metrics_data()  # forget what earlier tests recorded

    def read() -> dict[str, list[tuple[dict[str, Any], Any]]]:
        data = METRIC_READER.get_metrics_data()
        metrics_by_name = {
            metric.name: metric
            for resource_metrics in (data.resource_metrics if data else ())
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }
        return {
            name: sorted(
                (
                    (
                        dict(point.attributes or {}),
                        point.value
                        if isinstance(point, NumberDataPoint)
                        else (point.count, point.sum),
                    )
                    for point in metric.data.data_points
                ),
                key=repr,
            )
            for name, metric in metrics_by_name.items()
        }

    return read
