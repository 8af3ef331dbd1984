"""Fixtures shared by the test suite: the Celery app, eager mode, a real worker, Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.conf import settings
from kombu.exceptions import OperationalError

from tests import exporter_worker, tasks
from tests.celery_app import app
from tests.services import stop_process
from tests.tasks import EVENTS_KEY, add

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from kombu import Producer

# The session's Redis Cluster and Sentinel set-up (tests/redis_topologies.py), started only
# when a test asks for them.
pytest_plugins = ["tests.redis_topologies"]

AMQP_URL = os.environ.get("CELERY_EVENTS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
"""The RabbitMQ of the worker tests that run on an AMQP broker."""


@pytest.fixture(name="redis_client", scope="session")
def fixture_redis_client() -> Iterator[redis.Redis]:
    """A client of the tests' Redis; deletes every key of this session's prefix at the end."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    keys = list(client.scan_iter(match=f"{settings.KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(name="celery_app")
def fixture_celery_app():
    return app


@pytest.fixture(name="refusing_broker")
def fixture_refusing_broker(celery_app):
    """A broker connection to a port nothing listens on: a publish through it fails at once.

    Publish with ``connection=refusing_broker, retry=False``.
    """
    with celery_app.connection_for_write(
        tasks.refusing_broker_url(), transport_options={"max_retries": 0}
    ) as connection:
        yield connection


@pytest.fixture(name="eager")
def fixture_eager(celery_app) -> Iterator[None]:
    """Run tasks in the calling process, as ``task_always_eager`` does."""
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


@pytest.fixture(name="keep_arguments")
def fixture_keep_arguments(settings) -> None:
    """Index entries keep the calls' arguments (INDEX_ARGUMENTS "all"; the default redacts them)."""
    settings.DJANGO_CELERY_EXTENSIONS_INDEX_ARGUMENTS = "all"


@pytest.fixture(autouse=True)
def _clean_cache(redis_client) -> Iterator[None]:
    """Every test starts with no cache key (lock, ignore window) left by another test."""
    yield
    keys = list(redis_client.scan_iter(match=f"{settings.KEY_PREFIX}cache:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(autouse=True)
def _new_task_sender() -> None:
    """Every test publishes through a task sender made for it.

    Celery 5.5's sender sends ``before_task_publish`` and ``after_task_publish`` only when the
    receivers list it saw when it was made is not empty. A weakly connected receiver that dies
    (django-structlog's, in tests/test_exporter_neighbours.py) makes the signal replace that
    list, and the exporter a later test connects would never hear a publish. Celery 5.7 looks
    at the signal on every publish.
    """
    app.amqp.__dict__.pop("send_task_message", None)


@contextmanager
def running_worker(
    log: Path,
    queue: str,
    *,
    env: Mapping[str, str] | None = None,
    worker_args: Sequence[str] = (),
    publish_options: Mapping[str, Any] | None = None,
    answers: Callable[[str], object] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a real Celery worker, in its own process, consuming ``queue`` while the block runs.

    ``env`` is added to the worker's environment and ``worker_args`` to its command line; the
    block starts once the worker answered a call published with ``publish_options``: its
    result, or what ``answers(queue)`` waits for (a worker without a result backend).
    """
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.celery_app",
                "worker",
                "-P",
                "solo",
                "-Q",
                queue,
                "-l",
                "info",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                *worker_args,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **(env or {})},
            cwd=Path(__file__).parent.parent,
            # A group of its own, so that a test can kill the worker with its pool processes.
            start_new_session=True,
        )
    try:
        try:
            if answers is None:
                add.apply_async_and_get_result(
                    args=(1, 1), timeout=60, queue=queue, **(publish_options or {})
                )
            else:
                answers(queue)
        except Exception:  # noqa: BLE001 - any failure to start is reported with the log
            pytest.fail(f"the worker did not start:\n{log.read_text()}")
        yield process
    finally:
        stop_process(process)


@pytest.fixture(name="worker", scope="session")
def fixture_worker(redis_client, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker, in its own process, consuming the "worker" queue from Redis."""
    with running_worker(tmp_path_factory.mktemp("worker") / "worker.log", "worker") as process:
        yield process


@pytest.fixture(name="concurrent_worker", scope="session")
def fixture_concurrent_worker(redis_client, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:
    """A real prefork worker of two processes, consuming the "concurrent" queue from Redis.

    Two processes let one attempt start while another runs (a canvas member while the call it
    joined runs), and prefork gives time limits their signals.
    """
    with running_worker(
        tmp_path_factory.mktemp("concurrent-worker") / "worker.log",
        tasks.CONCURRENT_QUEUE,
        worker_args=("-P", "prefork", "-c", "2"),
    ) as process:
        yield process


@pytest.fixture(name="amqp_producer", scope="session")
def fixture_amqp_producer() -> Iterator[Producer]:
    """A producer publishing to RabbitMQ; the test is skipped, saying why, when there is none."""
    connection = app.connection_for_write(AMQP_URL)
    try:
        connection.ensure_connection(max_retries=1)
    except OperationalError as exc:
        pytest.skip(f"no RabbitMQ at {AMQP_URL}: {exc}")
    with connection:
        yield connection.Producer()


@pytest.fixture(name="exporters_worker", scope="session")
def fixture_exporters_worker(redis_client, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker with both exporters on, consuming the "exporters" queue from Redis."""
    with running_worker(
        tmp_path_factory.mktemp("exporters-worker") / "worker.log",
        exporter_worker.QUEUE,
        env=exporter_worker.WORKER_ENV,
        worker_args=exporter_worker.worker_args(),
    ) as process:
        yield process


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after timeout.

    Not a timing assertion: the timeout only bounds a wait for something the worker does after
    the caller's ``get()`` returns (Celery stores the result before it runs ``on_success``).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(name="worker_events")
def fixture_worker_events(redis_client) -> Callable[[str], list[dict[str, Any]]]:
    """Read the events the worker recorded for one invocation id, in order."""

    def read(invocation_id: str) -> list[dict[str, Any]]:
        events = (json.loads(raw) for raw in redis_client.lrange(EVENTS_KEY, 0, -1))
        return [event for event in events if event["invocation_id"] == invocation_id]

    return read


@pytest.fixture(name="attempt_events")
def fixture_attempt_events(worker_events) -> Callable[[str], list[dict[str, Any]]]:
    """Wait for the start and the end event of a call's one attempt; return both, in order."""

    def read(invocation_id: str) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (found := worker_events(invocation_id)) and len(found) == 2 and found,
            f"the start and end events of {invocation_id}",
        )

    return read


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the browser tests (tests/test_admin_browser.py) saved their screenshots."""
    saved = {
        Path(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == "screenshot"
    }
    for directory in sorted({path.parent for path in saved}):
        count = sum(path.parent == directory for path in saved)
        terminalreporter.write_line(f"{count} screenshots of the browser tests in {directory}")
