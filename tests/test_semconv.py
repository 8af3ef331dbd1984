"""Every name the OpenTelemetry exporter writes is in the semantic conventions it claims, or ours.

The registry is read from opentelemetry-semantic-conventions (installed with the Celery
instrumentation): its attribute and metric modules name each key as a constant, with a docstring
that starts with "Deprecated:" once the conventions replaced it. The names the exporter writes
are collected from what it really records for calls of every outcome, not from its constants.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
from celery.exceptions import TimeoutError
from django.apps import apps
from django.test import override_settings
from kombu.exceptions import OperationalError

from celery_events.exporters import semconv
from tests import tasks
from tests.telemetry import fixture_read_metrics, fixture_spans  # noqa: F401 - fixtures

schemas = pytest.importorskip(
    "opentelemetry.semconv.schemas", reason="opentelemetry-semantic-conventions is not installed"
)

OUR_NAMESPACE = "celery_events."
SDK_EXCEPTION_KEYS = frozenset(
    ("exception.type", "exception.message", "exception.stacktrace", "exception.escaped")
)
"""What the SDK's ``record_exception`` writes on an ``exception`` event: the SDK's names."""


def _registry(*packages: str) -> dict[str, bool]:
    """Return every name the modules of ``packages`` define, mapped to whether it is deprecated.

    A name is current when one of the modules defines it without deprecating it.
    """
    names: dict[str, bool] = {}
    for package_name in packages:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            spec = importlib.util.find_spec(f"{package_name}.{module.name}")
            tree = ast.parse(Path(spec.origin).read_text())
            body = tree.body
            for statement, following in zip(body, [*body[1:], None], strict=True):
                if not (
                    isinstance(statement, ast.AnnAssign)
                    and isinstance(statement.value, ast.Constant)
                    and isinstance(statement.value.value, str)
                ):
                    continue
                docstring = (
                    following.value.value
                    if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    else ""
                )
                # A stable key is also an incubating one, "deprecated in favor of" the stable.
                deprecated = str(docstring).strip().startswith("Deprecated")
                name = statement.value.value
                names[name] = names.get(name, True) and deprecated
    return names


ATTRIBUTES = _registry(
    "opentelemetry.semconv.attributes", "opentelemetry.semconv._incubating.attributes"
)
METRICS = _registry("opentelemetry.semconv.metrics", "opentelemetry.semconv._incubating.metrics")


def _current(name: str, registry: dict[str, bool]) -> bool:
    return name.startswith(OUR_NAMESPACE) or registry.get(name) is False


@pytest.fixture(name="exporter")
def fixture_exporter():
    with override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["opentelemetry"]):
        yield apps.get_app_config("celery_events").exporters[0]


@pytest.fixture(name="recorded")
def fixture_recorded(exporter, spans, read_metrics, refusing_broker, celery_app):
    """The spans and metrics of calls of every outcome: each end of an attempt, each of a call."""
    celery_app.conf.task_always_eager = True
    try:
        tasks.flaky.apply_async(args=(1,))  # a retry, then a success
        tasks.always_fails.apply_async(args=(1,))
        tasks.ignored_after_success.apply_async(args=(4,))
        tasks.ignored_after_success.apply_async(args=(4,))
    finally:
        celery_app.conf.task_always_eager = False
    tasks.caller_unique.apply_async(args=(5,))
    joined = tasks.caller_unique.apply_async(args=(5,))
    with pytest.raises(TimeoutError):
        joined.get(timeout=0.01)
    with pytest.raises(OperationalError):
        tasks.caller_plain.apply_async(args=(1,), connection=refusing_broker, retry=False)
    return spans.get_finished_spans(), read_metrics()


def test_schema_url_names_a_version_of_the_conventions():
    assert semconv.SCHEMA_URL in {schema.value for schema in schemas.Schemas}


def test_every_span_attribute_is_a_current_convention_or_ours(recorded):
    finished, _ = recorded
    keys = {key for span in finished for key in span.attributes}
    keys |= {
        key
        for span in finished
        for event in span.events
        for key in event.attributes
        if not (event.name == "exception" and key in SDK_EXCEPTION_KEYS)
    }

    assert {"messaging.operation.type", "server.address", "error.type"} <= keys
    assert sorted(key for key in keys if not _current(key, ATTRIBUTES)) == []


def test_every_metric_is_a_current_convention_or_ours(recorded):
    _, metrics = recorded

    assert {"messaging.client.sent.messages", "messaging.process.duration"} <= set(metrics)
    assert sorted(name for name in metrics if not _current(name, METRICS)) == []


def test_every_metric_attribute_is_a_current_convention_or_ours(recorded):
    _, metrics = recorded
    keys = {key for points in metrics.values() for attributes, _ in points for key in attributes}

    assert sorted(key for key in keys if not _current(key, ATTRIBUTES)) == []


def test_operation_types_are_current_values_of_the_conventions():
    values = importlib.import_module(
        "opentelemetry.semconv._incubating.attributes.messaging_attributes"
    ).MessagingOperationTypeValues

    assert {semconv.SEND, semconv.PROCESS} <= {values.SEND.value, values.PROCESS.value}
