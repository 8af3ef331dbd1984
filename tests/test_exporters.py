"""The EXPORTERS setting: the registry, option checks, wiring in AppConfig, and isolation."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from celery_events import signals
from celery_events.exporters import BUILTIN_EXPORTERS, connect_exporters, disconnect_exporters
from celery_events.exporters.base import InFlight
from celery_events.exporters.opentelemetry import OpenTelemetryExporter
from celery_events.exporters.structlog import StructlogExporter
from tests import tasks
from tests.telemetry import fixture_spans  # noqa: F401 - the spans fixture


class RecordingExporter:
    """An exporter of the tests' own, named by its dotted path: records the events it sees."""

    def __init__(self, *, label: str = "") -> None:
        self.label = label
        self.seen: list[str] = []

    def _record(self, sender, **kwargs):
        self.seen.append(kwargs["invocation_id"])

    def connect(self) -> None:
        signals.invocation_apply.connect(self._record)

    def disconnect(self) -> None:
        signals.invocation_apply.disconnect(self._record)


class RaisingExporter:
    """An exporter whose receivers all raise."""

    def _raise(self, sender, **kwargs):
        msg = "exporter bug"
        raise RuntimeError(msg)

    def connect(self) -> None:
        for signal in signals.ALL_SIGNALS:
            signal.connect(self._raise)

    def disconnect(self) -> None:
        for signal in signals.ALL_SIGNALS:
            signal.disconnect(self._raise)


def _receiver_counts():
    return {signal.name: len(signal.receivers) for signal in signals.ALL_SIGNALS}


@pytest.fixture(name="app_config")
def fixture_app_config():
    return apps.get_app_config("celery_events")


@pytest.fixture(name="connected")
def fixture_connected():
    """Connect exporters for one test and disconnect them after it."""
    connected = []

    def connect(setting):
        exporters = connect_exporters(setting)
        connected.extend(exporters)
        return exporters

    yield connect
    disconnect_exporters(connected)


def test_exporters_are_off_by_default_and_connect_no_receiver(app_config):
    assert app_config.exporters == ()
    assert set(_receiver_counts().values()) == {0}


def test_builtin_exporters_are_structlog_and_opentelemetry():
    assert dict(BUILTIN_EXPORTERS) == {
        "opentelemetry": "celery_events.exporters.opentelemetry.OpenTelemetryExporter",
        "structlog": "celery_events.exporters.structlog.StructlogExporter",
    }


def test_list_of_names_connects_each_exporter_to_every_signal(connected):
    exporters = connected(["structlog", "opentelemetry"])

    assert [type(exporter) for exporter in exporters] == [StructlogExporter, OpenTelemetryExporter]
    assert set(_receiver_counts().values()) == {2}


def test_disconnect_exporters_leaves_no_receiver():
    disconnect_exporters(connect_exporters(["structlog", "opentelemetry"]))

    assert set(_receiver_counts().values()) == {0}


def test_dict_gives_each_exporter_its_options(connected):
    (structlog_exporter, otel_exporter) = connected(
        {"structlog": {"log_args": True}, "opentelemetry": {"link_to_producer": True}}
    )

    assert structlog_exporter._log_args is True
    assert otel_exporter.link_to_producer is True


def test_dotted_path_names_an_exporter_class_of_the_project(connected, eager):
    (exporter,) = connected({"tests.test_exporters.RecordingExporter": {"label": "mine"}})

    result = tasks.add.apply_async(args=(1, 2))

    assert isinstance(exporter, RecordingExporter)
    assert exporter.label == "mine"
    assert exporter.seen == [result.invocation_id]


def test_unknown_exporter_name_raises_listing_the_known_ones():
    message = (
        "unknown exporter 'logfire' in DJANGO_CELERY_EXTENSIONS_EXPORTERS: the known exporters "
        "are opentelemetry, structlog, or give the dotted path of an exporter class"
    )
    with pytest.raises(ImproperlyConfigured, match=f"^{re.escape(message)}$"):
        connect_exporters(["structlog", "logfire"])

    assert set(_receiver_counts().values()) == {0}  # nothing half-connected


def test_dotted_path_that_does_not_import_raises_naming_it():
    with pytest.raises(
        ImproperlyConfigured,
        match=r"^cannot import exporter 'tests\.nowhere\.Exporter' in "
        r"DJANGO_CELERY_EXTENSIONS_EXPORTERS \(No module named 'tests\.nowhere'\): "
        r"the known exporters are opentelemetry, structlog",
    ):
        connect_exporters(["tests.nowhere.Exporter"])


def test_dotted_path_to_something_else_than_an_exporter_class_raises():
    with pytest.raises(
        ImproperlyConfigured,
        match=r"^exporter 'os\.path\.join' in DJANGO_CELERY_EXTENSIONS_EXPORTERS is not an "
        r"exporter class: it needs connect\(\) and disconnect\(\) methods$",
    ):
        connect_exporters(["os.path.join"])


def test_unknown_option_raises_naming_it_and_the_options():
    with pytest.raises(
        ImproperlyConfigured,
        match=r"^exporter 'structlog' has no option 'colours'; "
        r"its options are: levels, log_args, max_in_flight$",
    ):
        connect_exporters({"structlog": {"colours": True}})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "structlog",
            {"log_args": "yes"},
            "option 'log_args' of exporter 'structlog' must be a bool, not 'yes'",
        ),
        (
            "structlog",
            {"levels": {"task_exploded": "error"}},
            (
                "option 'levels' of exporter 'structlog' must be a dict of event name "
                "(invocation_applied, invocation_triggered, invocation_deduplicated, "
                "invocation_ignored, invocation_failed, invocation_timed_out, task_started, "
                "task_retrying, task_failed, task_succeeded) -> level (debug, info, warning, "
                "error, critical), not {'task_exploded': 'error'}"
            ),
        ),
        (
            "structlog",
            {"levels": {"task_failed": "loud"}},
            "option 'levels' of exporter 'structlog' must be a dict of event name",
        ),
        (
            "structlog",
            {"max_in_flight": 0},
            "option 'max_in_flight' of exporter 'structlog' must be a positive int, not 0",
        ),
        (
            "opentelemetry",
            {"link_to_producer": "true"},
            "option 'link_to_producer' of exporter 'opentelemetry' must be a bool, not 'true'",
        ),
        (
            "opentelemetry",
            {"max_in_flight": True},
            "option 'max_in_flight' of exporter 'opentelemetry' must be a positive int, not True",
        ),
    ],
)
def test_bad_option_value_raises_naming_the_option(name, options, message):
    with pytest.raises(ImproperlyConfigured, match=f"^{re.escape(message)}"):
        connect_exporters({name: options})


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "structlog",
            (
                "DJANGO_CELERY_EXTENSIONS_EXPORTERS must be a list of exporter names or a dict of "
                "name -> options, not 'structlog'"
            ),
        ),
        (
            ["structlog", "structlog"],
            "DJANGO_CELERY_EXTENSIONS_EXPORTERS names exporter 'structlog' more than once",
        ),
        (
            [StructlogExporter],
            (
                "DJANGO_CELERY_EXTENSIONS_EXPORTERS: an exporter name must be a string, not "
                "<class 'celery_events.exporters.structlog.StructlogExporter'>"
            ),
        ),
        (
            {"structlog": True},
            (
                "DJANGO_CELERY_EXTENSIONS_EXPORTERS: the options of exporter 'structlog' must be a "
                "dict, not True"
            ),
        ),
    ],
)
def test_malformed_setting_raises_naming_the_value(setting, message):
    with pytest.raises(ImproperlyConfigured, match=f"^{re.escape(message)}$"):
        connect_exporters(setting)


def test_unknown_exporter_stops_django_startup():
    env = {**os.environ, "CELERY_EVENTS_TEST_EXPORTERS": json.dumps(["logfire"])}
    process = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**env, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )

    assert process.returncode == 1
    assert process.stderr.splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: unknown exporter 'logfire' in "
        "DJANGO_CELERY_EXTENSIONS_EXPORTERS: the known exporters are opentelemetry, structlog, "
        "or give the dotted path of an exporter class"
    )


def test_override_settings_connects_the_exporters_and_restores_none(app_config):
    with override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["structlog"]):
        assert [type(exporter) for exporter in app_config.exporters] == [StructlogExporter]
        assert set(_receiver_counts().values()) == {1}

    assert app_config.exporters == ()
    assert set(_receiver_counts().values()) == {0}


def test_override_settings_with_an_unknown_exporter_raises_and_connects_nothing(app_config):
    with (
        pytest.raises(ImproperlyConfigured, match="unknown exporter 'logfire'"),
        override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["logfire"]),
    ):
        pass

    assert app_config.exporters == ()
    assert set(_receiver_counts().values()) == {0}


@override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["structlog", "opentelemetry"])
def test_ready_again_replaces_the_exporters_instead_of_adding_to_them(app_config):
    app_config.ready()

    assert len(app_config.exporters) == 2
    assert set(_receiver_counts().values()) == {2}


@override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["structlog"])
def test_disabled_exporter_sends_nothing(eager, spans):
    with structlog.testing.capture_logs() as lines:
        tasks.add.apply_async(args=(1, 2))

    assert [line["event"] for line in lines] == [
        "invocation_applied",
        "invocation_triggered",
        "task_started",
        "task_succeeded",
    ]
    assert spans.get_finished_spans() == ()


@override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["opentelemetry"])
def test_other_disabled_exporter_sends_nothing(eager, spans):
    with structlog.testing.capture_logs() as lines:
        tasks.add.apply_async(args=(1, 2))

    assert lines == []
    assert [span.name for span in spans.get_finished_spans()] == [
        "apply_async tests.tasks.add",
        "run tests.tasks.add",
    ]


class TestRaisingExporter:
    @pytest.fixture(autouse=True)
    def _raising_first(self):
        """A raising exporter beside both built-in ones."""
        setting = ["tests.test_exporters.RaisingExporter", "structlog", "opentelemetry"]
        with override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=setting):
            yield

    def test_eager_tasks_and_the_other_exporters_are_unaffected(self, eager, spans, caplog):
        with structlog.testing.capture_logs() as lines, caplog.at_level(logging.ERROR):
            assert tasks.flaky.apply_async(args=(1,)).get() == 1
            failed = tasks.always_fails.apply_async(args=(1,))

        assert failed.state == "FAILURE"
        assert [line["event"] for line in lines] == [
            "invocation_applied",
            "invocation_triggered",
            "task_started",
            "task_retrying",
            "task_started",
            "task_succeeded",
            "invocation_applied",
            "invocation_triggered",
            "task_started",
            "task_failed",
        ]
        assert len(spans.get_finished_spans()) == 5
        logged = [record for record in caplog.records if record.name == "celery_events"]
        assert len(logged) == 10  # one per event: the raising receiver, logged and skipped
        assert all(record.exc_info[1].args == ("exporter bug",) for record in logged)

    def test_published_call_returns_its_result(self):
        result = tasks.caller_plain.apply_async(args=(1,))

        assert result.state == "PENDING"
        assert result.task_id is not None


def test_in_flight_drops_the_oldest_entry_past_its_bound():
    in_flight = InFlight(2)
    for key in "abc":
        in_flight.add(key, key.upper())

    assert len(in_flight) == 2
    assert in_flight.pop("a") is None
    assert in_flight.pop("b") == "B"
    assert in_flight.pop("b") is None
    assert len(in_flight) == 1
