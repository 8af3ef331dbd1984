"""Every Python example of the docs runs here.

The examples are files under ``docs/examples/`` that the pages show with ``literalinclude``. That
folder goes on ``sys.path``, so each example is imported as the Django app it plays
(``catalog.tasks``, ``notifications.tasks``...) and its tasks are DjangoTasks of the test suite's
Celery app. The project of the management commands' example (``proj``) makes a Celery app of its
own, so it runs in a subprocess with its own settings. The getting-started page shows its files
inline: tests/test_getting_started.py follows it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
import warnings
import weakref
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
import structlog
from celery.exceptions import CDeprecationWarning
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.test import override_settings
from django.utils import timezone

from celery_events import signals
from celery_events.config import DEFAULTS, SETTING_PREFIX
from celery_events.config import settings as ce_settings
from celery_events.testing import capture_events
from tests import exporter_worker, tasks
from tests.conftest import running_worker, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


def _names(events):
    return [event.name for event in events]


def _example(name: str) -> ModuleType:
    return importlib.import_module(name)


def _receivers_of(module_name: str) -> list[tuple[Any, Any]]:
    found = []
    for signal in signals.ALL_SIGNALS:
        for receiver in list(signal.receivers.values()):
            function = receiver() if isinstance(receiver, weakref.ref) else receiver
            if getattr(function, "__module__", None) == module_name:
                found.append((signal, function))
    return found


@pytest.fixture(name="connected")
def fixture_connected() -> Iterator[Any]:
    """Import an example module that connects receivers; disconnect them when the test ends.

    The rest of the suite expects no receiver connected, so a module imported by an earlier test
    is reloaded to connect its receivers again.
    """
    names = []

    def connect(name: str) -> ModuleType:
        names.append(name)
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)

    yield connect
    for name in names:
        for signal, receiver in _receivers_of(name):
            signal.disconnect(receiver)


def _run_in_example_project(script: str) -> tuple[Any, str]:
    """Run ``script`` in a new interpreter with the settings of the examples' project, ``proj``.

    Returns:
        The JSON object that the script prints on its last line, and all it printed.
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)]),
    }
    run = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=EXAMPLES,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1]), run.stdout


# docs/index.md


@pytest.mark.django_db(transaction=True)
def test_index_example_pushes_after_commit_and_logs_retries(eager, connected, caplog):
    crm_tasks = connected("crm.tasks")
    from crm.client import crm  # noqa: PLC0415 - imported with the example

    crm.pushed.clear()
    crm.failures_left = 1
    user = User.objects.create_user("ada")

    with capture_events() as events:
        crm_tasks.rename_user(user.pk, "Ada")

    assert crm.pushed == [user.pk]
    assert User.objects.get(pk=user.pk).first_name == "Ada"
    assert _names(events) == [
        "invocation_apply",
        "invocation_trigger",
        "task_start",
        "task_retry",
        "task_start",
        "task_success",
    ]
    assert "push_user_to_crm retries at" in caplog.text
    assert not crm_tasks.push_user_to_crm.is_processing(args=(user.pk,))


# docs/tasks.md


@pytest.mark.django_db(transaction=True)
def test_on_commit_call_waits_for_the_commit(eager, mailoutbox):
    task_id = _example("accounts.signup").create_user_and_welcome("grace", "grace@example.com")

    assert task_id
    assert [message.to for message in mailoutbox] == [["grace@example.com"]]


@pytest.mark.django_db(transaction=True)
def test_sign_up_view_sends_the_welcome_email_after_commit(eager, rf, mailoutbox):
    views = _example("accounts.views")
    request = rf.post("/sign-up/", {"username": "linus", "email": "linus@example.com"})

    with capture_events() as events:
        response = views.sign_up(request)

    assert response.status_code == 201
    assert _names(events) == [
        "invocation_apply",
        "invocation_trigger",
        "task_start",
        "task_success",
    ]
    assert [message.to for message in mailoutbox] == [["linus@example.com"]]


def test_shipping_price_waits_for_the_result(eager):
    assert _example("shipping.quotes").shipping_price(1500) == 505


def test_shipping_price_falls_back_when_no_worker_answers(celery_app):
    # Not eager: the call goes to a queue that no worker of the test suite consumes.
    quotes = _example("shipping.quotes")

    with capture_events() as events:
        assert quotes.shipping_price(1500) == quotes.FLAT_RATE

    assert _names(events) == ["invocation_apply", "invocation_trigger", "invocation_timeout"]


@pytest.fixture(name="sms_gateway")
def fixture_sms_gateway():
    from notifications.gateway import sms_gateway  # noqa: PLC0415 - on the examples' path

    sms_gateway.busy_times = 0
    sms_gateway.sent.clear()
    return sms_gateway


def test_send_sms_waits_the_delay_of_each_retry(eager, sms_gateway):
    send_sms = _example("notifications.sms").send_sms
    sms_gateway.busy_times = 2

    before = timezone.now()
    with capture_events() as events:
        result = send_sms.delay("+420123456789", "Your parcel is on its way")
    after = timezone.now()

    assert result.get() == "sms-1"
    etas = [event.kwargs["eta"] for event in events if event.name == "task_retry"]
    assert len(etas) == 2
    for eta, delay in zip(etas, (60, 120), strict=True):
        assert before + timedelta(seconds=delay) <= eta <= after + timedelta(seconds=delay)


def test_send_sms_fails_after_as_many_retries_as_delays(eager, sms_gateway):
    send_sms = _example("notifications.sms").send_sms
    sms_gateway.busy_times = 10

    with capture_events() as events:
        result = send_sms.delay("+420123456789", "Your parcel is on its way")

    assert result.state == "FAILURE"
    assert _names(events).count("task_start") == 4
    assert _names(events).count("task_retry") == 3
    assert _names(events)[-1] == "task_failure"


def test_second_rebuild_joins_the_first():
    task_id = _example("catalog.rebuild").rebuild_twice(1)

    assert task_id


def test_custom_key_generator_gives_one_lock_per_catalog():
    reindex_products = _example("catalog.reindex").reindex_products

    first = reindex_products.delay(3, [1, 2])
    second = reindex_products.delay(3, [4])
    other_catalog = reindex_products.delay(4, [1, 2])

    assert second.task_id == first.task_id
    assert other_catalog.task_id != first.task_id
    assert reindex_products.is_processing(args=(3, [])), "any products of catalog 3"


def test_users_test_with_capture_events_passes():
    _example("catalog.tests").test_a_second_rebuild_joins_the_first()


def test_stale_time_limit_is_derived_from_time_limit_retries_and_queue_waiting_time():
    waiting = _example(
        "extra_settings"
    ).DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_MAX_QUEUE_WAITING_TIME
    import_price_list = _example("suppliers.tasks").import_price_list

    with (
        override_settings(DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_MAX_QUEUE_WAITING_TIME=waiting),
        capture_events() as events,
    ):
        import_price_list.delay(1)

    options = events[1].kwargs["options"]
    # The numbers of docs/tasks.md: (300 + 60) * 3 + (30 + 120), and 1230 - 300.
    assert options["stale_time_limit"] == 1230
    assert options["expires"] == options["trigger_time"] + timedelta(seconds=930)


@pytest.fixture(name="mailer")
def fixture_mailer():
    from notifications.gateway import mailer  # noqa: PLC0415 - on the examples' path

    mailer.sent.clear()
    mailer.bounce = False
    return mailer


def test_digest_is_ignored_after_success(eager, mailer):
    _example("notifications.digest").send_digest_twice(1)

    assert mailer.sent == [1]


def test_reminder_is_ignored_only_once_delivered(eager, mailer):
    remind = _example("notifications.reminders").remind_to_verify_email
    mailer.bounce = True

    assert remind.delay(1).get() is False
    assert remind.delay(1).state == "SUCCESS"

    mailer.bounce = False
    assert remind.delay(1).get() is True
    assert remind.delay(1).state == "IGNORED"
    assert mailer.sent == [1, 1, 1]


COMMANDS = """
import json

import django

django.setup()

from django.core.management import call_command
from django.test import override_settings

import commands_usage
import extra_settings
from celery_events.commands import generate_command_tasks
from celery_events.task import DjangoTask, get_django_command_task
from celery_events.testing import capture_events
from proj import celery_app

call_command("migrate", verbosity=0)
celery_app.conf.task_always_eager = True
with override_settings(
    # The lock of the unique command task in memory, not in a Redis the test does not own.
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS=(
        extra_settings.DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS
    ),
):
    (task,) = generate_command_tasks(DjangoTask)  # what the app does when Django starts
    with capture_events() as events:
        commands_usage.clear_sessions_soon()
        commands_usage.clear_sessions_quietly()
print(json.dumps({
    "task": task.name,
    "found": get_django_command_task("clearsessions").name,
    "scheduled": extra_settings.CELERY_BEAT_SCHEDULE["clear-sessions-nightly"]["task"],
    "unique": task.unique,
    "events": [event.name for event in events],
    "kwargs": [event.kwargs["kwargs"] for event in events if event.name == "task_start"],
}))
"""


def test_command_task_from_settings_runs_and_matches_the_beat_schedule():
    # In the project's own process: the command task it makes is the docs' alone.
    outcome, _ = _run_in_example_project(COMMANDS)

    name = "command.django.contrib.sessions.clearsessions"
    assert (outcome["task"], outcome["found"], outcome["scheduled"]) == (name, name, name)
    assert outcome["unique"] is True
    assert outcome["events"] == 2 * [
        "invocation_apply",
        "invocation_trigger",
        "task_start",
        "task_success",
    ]
    assert outcome["kwargs"] == [{}, {"verbosity": 0}]


def test_configuration_example_names_only_known_settings():
    extra = _example("extra_settings")
    ours = {
        name: value
        for name, value in vars(extra).items()
        if name.startswith(SETTING_PREFIX) and name.isupper()
    }

    assert {name.removeprefix(SETTING_PREFIX) for name in ours} <= set(DEFAULTS)
    # Overriding EXPORTERS connects the exporters, which checks their names; the example's CACHES
    # has the cache that its CACHE_NAME names.
    with override_settings(CACHES=extra.CACHES, **ours):
        messages = [m for m in run_checks() if m.id.startswith("celery_events.")]
        assert ce_settings.CACHE_NAME == "locks"
    assert messages == []
    assert "locks" in extra.CACHES


def test_configuration_page_gives_every_setting_with_its_default():
    page = (ROOT / "docs" / "configuration.md").read_text()

    for name, default in DEFAULTS.items():
        heading = f"### `{SETTING_PREFIX}{name}`"
        assert heading in page, f"docs/configuration.md lacks {name}"
        section = page.split(heading, 1)[1].split("###", 1)[0]
        assert f"default `{default!r}`" in section, f"{name}: the page's default is not {default!r}"


def test_queue_enum_gives_tasks_their_queue_and_default_options(eager):
    with warnings.catch_warnings():
        # Celery 5.7 deprecates the queue task attribute (docs/tasks.md says so).
        warnings.simplefilter("ignore", CDeprecationWarning)
        tasks = _example("reports.tasks")
        ping, report = tasks.ping._get_current_object(), tasks.monthly_report._get_current_object()

    assert (ping.queue, ping.time_limit, ping.soft_time_limit) == ("fast", 10, 8)
    assert (report.queue, report.time_limit) == ("reports", 7200)
    assert ping.delay().get() == "pong"


def test_audited_task_hooks_log_joins_and_failures(celery_app, caplog):
    caplog.set_level(logging.INFO, logger="audit.tasks")
    close_month = _example("audit.tasks").close_month

    first = close_month.delay("2024-11")
    second = close_month.delay("2024-11")
    assert second.task_id == first.task_id
    assert f"joined task {first.task_id}" in caplog.text

    celery_app.conf.task_always_eager = True
    try:
        assert close_month.delay("2024-13").state == "FAILURE"
    finally:
        celery_app.conf.task_always_eager = False
    assert "failed: ValueError('no such month: 2024-13')" in caplog.text


# docs/events.md


def test_receivers_for_all_tasks_and_for_one_task(eager, connected):
    receivers = connected("audit.receivers")
    receivers.failures.clear()
    receivers.closed.clear()

    _example("audit.tasks").close_month.delay("2024-13")
    _example("audit.tasks").close_month.delay("2024-12")
    _example("shipping.tasks").quote_shipping.delay(100)

    assert receivers.failures == {"audit.tasks.close_month: ValueError": 1}
    assert receivers.closed == ["audit.tasks.close_month: 2024-12"]


def test_lock_store_timeouts_example_reaches_the_stores_client():
    from django.core.cache import CacheHandler  # noqa: PLC0415

    from celery_events.locks.redis_cache import redis_binding  # noqa: PLC0415

    example = _example("lock_settings")
    cache = CacheHandler(example.CACHES)["default"]

    binding = redis_binding(cache, "default")

    assert binding is not None
    connection_kwargs = binding.client.connection_pool.connection_kwargs
    assert connection_kwargs["socket_timeout"] == 2
    assert connection_kwargs["socket_connect_timeout"] == 2


def test_cluster_example_runs_the_lock_store_on_a_cluster(redis_cluster):
    from django.core.cache import CacheHandler  # noqa: PLC0415

    from celery_events.locks import RedisLockStore  # noqa: PLC0415
    from celery_events.locks.redis_cache import redis_binding  # noqa: PLC0415

    example = _example("lock_settings")
    alias = example.DJANGO_CELERY_EXTENSIONS_CACHE_NAME
    # The example's node names resolve nowhere here: its cache is pointed at the test cluster.
    nodes = [f"redis://127.0.0.1:{node.port}" for node in redis_cluster]
    config = {**example.CLUSTER_CACHES[alias], "LOCATION": nodes}
    binding = redis_binding(CacheHandler({alias: config})[alias], alias)

    assert binding is not None
    assert binding.make_key("k") == "myproject:1:k"
    store = RedisLockStore(binding)
    key = f"test-docs-examples|{uuid.uuid4()}"
    assert store.admit(task_id="t", unique_key=key, lock_ttl=60, ignore_key=None).task_id == "t"
    store.release(task_id="t", unique_key=key, ignore_key=None, ignore_ttl=None)


def test_sentinel_example_asks_its_sentinels_for_the_primary_with_its_timeouts():
    from django.core.cache import CacheHandler  # noqa: PLC0415

    from celery_events.locks.redis_cache import redis_binding  # noqa: PLC0415

    example = _example("lock_settings")
    alias = example.DJANGO_CELERY_EXTENSIONS_CACHE_NAME

    binding = redis_binding(CacheHandler(example.SENTINEL_CACHES)[alias], alias)

    assert binding is not None
    pool = binding.client.connection_pool
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["socket_timeout"] == 2
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379] * 3
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 2


def test_exporter_settings_examples_connect_their_exporters():
    from celery_events.exporters import connect_exporters, disconnect_exporters  # noqa: PLC0415

    for module in ("exporter_settings", "exporter_options", "alerts"):
        setting = _example(module).DJANGO_CELERY_EXTENSIONS_EXPORTERS
        connected = connect_exporters(setting)
        try:
            assert len(connected) == len(setting)
        finally:
            disconnect_exporters(connected)


def test_exporter_testing_example_sees_the_retry(eager, sms_gateway):
    sms_gateway.busy_times = 1

    _example("exporter_recipes").test_retry_is_logged()


def test_structlog_example_renders_the_ids_a_task_binds(eager, capsys):
    recipes = _example("exporter_recipes")
    saved = structlog.get_config()
    try:
        recipes.configure_logging()
        with override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["structlog"]):
            result = _example("notifications.sms").send_sms.delay("+420123456789", "hi")
    finally:
        structlog.configure(**saved)

    output = capsys.readouterr().out
    assert "task_succeeded " in output
    assert f"task_id={result.task_id}" in output


def test_span_recorder_example_records_the_spans_of_a_call(eager):
    from celery_events.exporters.opentelemetry import format_span_tree  # noqa: PLC0415

    spans = _example("exporter_recipes").record_spans()
    with override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["opentelemetry"]):
        _example("notifications.sms").send_sms.delay("+420123456789", "hi")

    tree = format_span_tree(spans.get_finished_spans())
    assert "apply_async notifications.sms.send_sms" in tree
    assert "run notifications.sms.send_sms" in tree


def test_custom_exporter_example_pages_on_failure(eager, sms_gateway):
    from celery_events.exporters import connect_exporters, disconnect_exporters  # noqa: PLC0415

    alerts = _example("alerts")
    (pager,) = connect_exporters(alerts.DJANGO_CELERY_EXTENSIONS_EXPORTERS)
    sms_gateway.busy_times = 10
    try:
        result = _example("notifications.sms").send_sms.delay("+420123456789", "hi")
    finally:
        disconnect_exporters([pager])

    assert result.state == "FAILURE"
    assert pager.paged == [
        (
            f"tasks: notifications.sms.send_sms failed ({result.invocation_id}): "
            "GatewayBusyError('try again later')"
        )
    ]


# docs/exporters.md: the OpenTelemetry SDK set up in each process of a prefork worker.


@contextmanager
def _prefork_worker_with_the_sdk_set_up(log: Path, queue: str, **env: str) -> Iterator[None]:
    """Run a prefork worker that imports the set-up example, the OpenTelemetry exporter on."""
    with running_worker(
        log,
        queue,
        env={
            "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)]),
            exporter_worker.EXPORTERS_ENV_VAR: json.dumps(["opentelemetry"]),
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms: export spans at once rather than every 5 s
            "OTEL_METRIC_EXPORT_INTERVAL": "200",  # ms
            **env,
        },
        worker_args=(
            *("-P", "prefork", "-c", "1", "-I", "opentelemetry_setup"),
            *("-n", f"{queue}-{uuid.uuid4().hex[:8]}@%h"),
        ),
    ):
        yield


@pytest.mark.worker
def test_opentelemetry_setup_prints_the_spans_of_each_worker_process(tmp_path, redis_client):
    log = tmp_path / "worker.log"
    with _prefork_worker_with_the_sdk_set_up(log, "otel-console"):
        result = tasks.add.apply_async(args=(2, 3), queue="otel-console")
        assert result.get(timeout=30) == 5

        output = wait_for(
            lambda: (
                (text := log.read_text())
                and f'"messaging.message.id": "{result.task_id}"' in text
                and text
            ),
            "the worker's span of the call, on the console",
        )
    assert '"name": "run tests.tasks.add"' in output
    assert '"service.name": "proj-worker"' in output


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector of the test's own: keeps each request's path and body."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        """Keep the test's output quiet."""


@pytest.fixture(name="otlp_collector")
def fixture_otlp_collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """An OTLP/HTTP endpoint on this machine: its URL, and the requests it received."""
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.worker
def test_opentelemetry_setup_sends_spans_and_metrics_to_an_otlp_collector(
    tmp_path, redis_client, otlp_collector
):
    trace_service = pytest.importorskip(
        "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        reason="opentelemetry-exporter-otlp-proto-http is not installed",
    )
    endpoint, received = otlp_collector
    with _prefork_worker_with_the_sdk_set_up(
        tmp_path / "worker.log", "otel-otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint
    ):
        result = tasks.add.apply_async(args=(2, 3), queue="otel-otlp")
        assert result.get(timeout=30) == 5

        def spans_of_the_call():
            found = []
            for path, body in list(received):
                if path != "/v1/traces":
                    continue
                request = trace_service.ExportTraceServiceRequest.FromString(body)
                found.extend(
                    span.name
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                    if any(
                        attribute.value.string_value == result.task_id
                        for attribute in span.attributes
                    )
                )
            return found

        names = wait_for(spans_of_the_call, "the worker's span of the call, at the collector")
        wait_for(
            lambda: any(
                path == "/v1/metrics" and b"messaging.process.duration" in body
                for path, body in list(received)
            ),
            "the worker's metrics, at the collector",
        )
    assert names == ["run tests.tasks.add"]
