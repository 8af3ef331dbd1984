"""The celery-events demo: one call of each kind, run by an in-process worker, events printed live.

Run it with ``make demo`` from the repository root, or ``../.venv/bin/python demo.py`` from
here. It needs nothing running: Celery's in-memory broker and result backend, Django's
local-memory cache and a SQLite file that it migrates itself. With ``REDIS_URL`` set, the
broker, the result backend and the cache are that Redis, under keys of this run's own prefix,
which it deletes at the end, and says so.

Every event of ``celery_events.signals.ALL_SIGNALS`` is printed as it is sent, from the caller
(the main thread) and from the worker (its threads) alike; the invocation id joins the events
of one call, the task id those of one task. The settings switch on both built-in exporters: after
the run, the demo prints the structlog exporter's log lines and the OpenTelemetry exporter's spans
as a tree.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

import django
import redis
import structlog
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from kombu.utils.url import maybe_sanitize_url
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from celery_events.exporters.opentelemetry import format_span_tree
from celery_events.signals import ALL_SIGNALS

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
# With REDIS_URL, the run's keys get a prefix of its own beneath the project's (see
# demo_site/settings.py): keys left by an earlier run, or by manage.py, never change what this
# run shows, and forget_redis_keys() deletes exactly this run's.
os.environ["DEMO_RUN_KEY_PREFIX"] = f"run-{uuid.uuid4().hex[:8]}:"
django.setup()

# Imported once Django is set up: models and tasks need the app registry.
from demo_site.celery import app  # noqa: E402
from orders.models import Order  # noqa: E402
from orders.tasks import (  # noqa: E402
    CatalogueFormatError,
    charge_card,
    import_catalogue,
    rebuild_search_index,
    send_order_confirmation,
    send_weekly_digest,
    ship_order,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from structlog.typing import ExcInfo

    from celery_events.task import DjangoTask

#: How long the demo waits for the worker to finish a task before it gives up.
WAIT_SECONDS = 10.0
#: Ids are shortened to this many characters: enough to tell the demo's calls apart.
ID_LENGTH = 8


def short(identifier: str | None) -> str:
    """Return the first characters of a task or invocation id, or '-' when there is none."""
    return identifier[:ID_LENGTH] if identifier else "-"


def note(text: str) -> None:
    """Print what the demo observed, set apart from the event lines."""
    print(f"  => {text}")


@dataclass(frozen=True)
class Event:
    """One event of the bus, as the demo saw it."""

    seconds: float
    """Seconds since the demo started."""
    signal: str
    task_name: str
    invocation_id: str
    task_id: str | None
    detail: str
    """What the event tells beyond its ids: the retry's exception and delay, the result."""


class EventStream:
    """A receiver of all nine signals: prints each event at once and keeps it.

    The demo waits on it for the worker's last event of a call, so that each scenario's output
    is complete before the next one starts.
    """

    HEADER = (
        f"{'time':>7}  {'signal':<18}  {'task':<36}  {'invocation':<10}  {'task_id':<8}  detail"
    )

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._started = time.monotonic()
        self._changed = threading.Condition()

    def connect(self) -> None:
        """Connect to every signal of the bus.

        Strongly (``weak=False``): blinker would otherwise drop the partials at once, as nothing
        else refers to them.
        """
        for signal in ALL_SIGNALS:
            signal.connect(partial(self._receive, signal.name), weak=False)

    def _receive(self, signal_name: str, task: DjangoTask, **kwargs: Any) -> None:
        event = Event(
            seconds=time.monotonic() - self._started,
            signal=signal_name,
            task_name=task.name,
            invocation_id=kwargs["invocation_id"],
            task_id=kwargs.get("task_id"),
            detail=_detail(signal_name, kwargs),
        )
        with self._changed:  # the caller and the worker's threads both send events
            self.events.append(event)
            line = (
                f"{event.seconds:6.2f}s  {event.signal:<18}  {event.task_name:<36}  "
                f"{short(event.invocation_id):<10}  {short(event.task_id):<8}  {event.detail}"
            )
            print(line.rstrip())
            self._changed.notify_all()

    def wait_for(self, signal_name: str, task: DjangoTask) -> None:
        """Wait until ``task`` has sent ``signal_name`` (at once if it already has).

        Raises:
            TimeoutError: the event was not sent within WAIT_SECONDS.
        """

        def find() -> Event | None:
            return next(
                (e for e in self.events if e.signal == signal_name and e.task_name == task.name),
                None,
            )

        with self._changed:
            if self._changed.wait_for(find, timeout=WAIT_SECONDS) is None:
                msg = f"no {signal_name} event of task {task.name!r} within {WAIT_SECONDS}s"
                raise TimeoutError(msg)


def _detail(signal_name: str, kwargs: dict[str, Any]) -> str:
    if signal_name == "task_retry":
        delay = (kwargs["eta"] - timezone.now()).total_seconds()
        return f"{kwargs['exc']!r}, next attempt in {delay:.1f}s"
    if signal_name == "task_failure":
        return repr(kwargs["exc"])
    if signal_name == "task_success":
        return f"returned {kwargs['retval']!r}"
    return ""


# The scenarios, in the order the demo runs them. Each waits for its task's last event, so
# that the next heading comes after all of the previous scenario's events.


def on_commit_apply(stream: EventStream) -> None:
    """Apply a task inside a transaction: it waits for the commit, then triggers."""
    with transaction.atomic():
        order = Order.objects.create(email="ada@example.com")
        result = send_order_confirmation.delay_on_commit(order.pk)
        state_in_transaction = result.state
    stream.wait_for("task_success", send_order_confirmation)
    note(f"state inside the transaction: {state_in_transaction}; after the commit: {result.state}")


def unique_call(stream: EventStream) -> None:
    """Call a unique task twice at once: the second call joins the first."""
    first = rebuild_search_index.delay("books")
    second = rebuild_search_index.delay("books")
    processing_meanwhile = rebuild_search_index.is_processing(args=("books",))
    stream.wait_for("task_success", rebuild_search_index)
    note(
        f"second call's task id is the first's: {second.id == first.id}; is_processing "
        f"meanwhile {processing_meanwhile}, "
        f"afterwards {rebuild_search_index.is_processing(args=('books',))}"
    )


def ignored_call(stream: EventStream) -> None:
    """Call a task again right after it succeeded: the second call is ignored."""
    send_weekly_digest.delay("ada@example.com")
    stream.wait_for("task_success", send_weekly_digest)
    second = send_weekly_digest.delay("ada@example.com")
    note(f"second call: state {second.state}, task id {second.id}, get() {second.get()!r}")


def retried_call(stream: EventStream) -> None:
    """Run a task that fails twice: default_retry_delays spaces its three attempts."""
    order = Order.objects.create(email="grace@example.com")
    charge_card.delay(order.pk)
    stream.wait_for("task_success", charge_card)
    order.refresh_from_db()
    note(f"{order} after three attempts")


def failed_call(stream: EventStream) -> None:
    """Run a task that raises: it fails once, with no retry."""
    result = import_catalogue.delay("suppliers/acme.csv")
    stream.wait_for("task_failure", import_catalogue)
    note(f"state {result.state}; get(propagate=False) returns {result.get(propagate=False)!r}")


def successful_call(stream: EventStream) -> None:
    """Run a task and wait for its result in the caller."""
    order = Order.objects.create(email="alan@example.com")
    status = ship_order.apply_async_and_get_result(args=(order.pk,), timeout=WAIT_SECONDS)
    stream.wait_for("task_success", ship_order)
    note(f"apply_async_and_get_result returned {status!r}")


SCENARIOS: Sequence[tuple[str, Callable[[EventStream], None]]] = (
    (
        "On-commit apply: WAITING inside transaction.atomic(), triggered by the commit",
        on_commit_apply,
    ),
    ("Unique: a second call while the first runs is deduplicated into it", unique_call),
    ("Ignored: ignore_task_after_success ignores a repeat of a successful call", ignored_call),
    ("Retry: autoretry with default_retry_delays=(0.2, 0.4)", retried_call),
    ("Failure: the task raises, as the demo means it to, and is not retried", failed_call),
    ("Success: apply_async_and_get_result waits for the return value", successful_call),
)


def print_calls(events: Sequence[Event]) -> None:
    """Print each call of the run on one line: its events, joined by their invocation id.

    The signal names lose their ``invocation_`` and ``task_`` prefixes here, to fit a line.
    """
    calls: dict[str, list[Event]] = {}
    for event in events:
        calls.setdefault(event.invocation_id, []).append(event)
    print("\nEach call, its events joined by invocation_id:")
    for invocation_id, call_events in calls.items():
        path = " -> ".join(
            event.signal.removeprefix("invocation_").removeprefix("task_") for event in call_events
        )
        print(f"  {short(invocation_id):<10}  {call_events[0].task_name:<36}  {path}")


def services() -> str:
    """Say where the broker, the result backend and the cache live (no password shown)."""
    if not settings.REDIS_URL:
        return "in memory (set REDIS_URL to use Redis)"
    return f"Redis at {maybe_sanitize_url(settings.REDIS_URL)}, keys {settings.REDIS_KEY_PREFIX}*"


def forget_redis_keys() -> None:
    """Delete this run's keys from Redis, and say so: only those of its prefix, never a flush."""
    if not settings.REDIS_URL:
        return
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)
    print(
        f"\nDeleted this run's {len(keys)} Redis keys ({settings.REDIS_KEY_PREFIX}*); "
        "no other key was touched."
    )


def expected_failure_in_one_line(sio: TextIO, exc_info: ExcInfo) -> None:
    """Render import_catalogue's deliberate failure in one line, any other exception in full.

    The structlog exporter logs ``task_failed`` with its exception, whose traceback a
    ConsoleRenderer prints: for the failure the demo causes on purpose, that would read as a
    crash of the demo. A project keeps the traceback.
    """
    if isinstance(exc_info[1], CatalogueFormatError):
        sio.write(
            "\n  (expected: the demo's import_catalogue fails on purpose; traceback left out) "
            f"{exc_info[1]!r}"
        )
        return
    structlog.dev.plain_traceback(sio, exc_info)


def configure_telemetry() -> tuple[io.StringIO, InMemorySpanExporter]:
    """Send structlog's lines to a buffer and the finished spans to memory, to print at the end.

    A project would log to its stream and export spans to a collector instead. With
    ``merge_contextvars``, a task's own lines carry the invocation id and task id that the
    structlog exporter binds while the task runs.

    Returns:
        The buffer of log lines, and the exporter holding the finished spans.
    """
    log_lines = io.StringIO()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=expected_failure_in_one_line
            ),
        ],
        logger_factory=structlog.PrintLoggerFactory(log_lines),
    )
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    return log_lines, spans


def main() -> None:
    """Migrate the database, run every scenario with an in-process worker, then sum up."""
    log_lines, spans = configure_telemetry()
    call_command("migrate", verbosity=0)
    print(f"celery-events demo; broker, result backend and cache: {services()}")
    print(f"Every event of the bus, as it is sent:\n{EventStream.HEADER}")
    stream = EventStream()
    stream.connect()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False):
            for number, (heading, scenario) in enumerate(SCENARIOS, start=1):
                print(f"\n{number}. {heading}")
                scenario(stream)
        print_calls(stream.events)
        print("\nThe structlog exporter's log lines (and charge_card's own, which carry its ids):")
        print(log_lines.getvalue(), end="")
        print("\nThe OpenTelemetry exporter's spans, drawn by format_span_tree():")
        print(format_span_tree(spans.get_finished_spans()))
    finally:  # the last word, even when a scenario failed
        forget_redis_keys()


if __name__ == "__main__":
    main()
