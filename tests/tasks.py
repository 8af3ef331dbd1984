"""Tasks the tests call, eagerly or through a real worker consuming the "worker" queue.

In a worker process every event on the bus is also recorded in Redis (see ``record_events``),
so that tests in the calling process can read what the worker saw.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import timedelta
from signal import SIGKILL
from typing import Any, ClassVar

import redis
import structlog
from celery.exceptions import Ignore
from celery.signals import worker_init
from django.conf import settings
from opentelemetry import trace

from celery_events import signals
from celery_events.headers import UNIQUE_KEY_HEADER, read_header
from celery_events.locks import get_lock_store
from celery_events.task import DjangoTask
from tests.celery_app import app

EVENTS_KEY = f"{settings.KEY_PREFIX}events"


class FlakyError(Exception):
    """Raised by tasks that fail on purpose before they succeed."""


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def open_gate(name: str) -> None:
    """Let a ``gated`` task waiting on ``name`` finish."""
    _redis().rpush(f"{settings.KEY_PREFIX}gate:{name}", 1)


def _wait_for_gate(name: str) -> None:
    # Short waits: a client's socket timeout (redis-py 8's) would end one long BLPOP.
    gate = f"{settings.KEY_PREFIX}gate:{name}"
    for _ in range(60):
        if _redis().blpop([gate], timeout=1) is not None:
            return
    msg = f"gate {name!r} was never opened"
    raise TimeoutError(msg)


@app.task()
def add(x: int, y: int) -> int:
    return x + y


@app.task(unique=True, stale_time_limit=60)
def gated_unique(gate: str) -> str:
    _wait_for_gate(gate)
    return gate


# Tasks named caller_* are routed to a queue no worker consumes: their tests look only at
# the caller's side, and their messages must not run in a later worker test.


@app.task(unique=True, stale_time_limit=60)
def caller_unique(x: int) -> int:
    return x


@app.task(unique=True)
def caller_unique_without_stale_time_limit(x: int) -> int:
    return x


@app.task
def caller_plain(x: int) -> int:
    return x


@app.task(
    ignore_task_after_success=True,
    ignore_task_timedelta=timedelta(seconds=60),
)
def ignored_after_success(x: int) -> int:
    return x


@app.task(
    bind=True,
    ignore_task_timedelta=timedelta(seconds=60),
    autoretry_for=(FlakyError,),
    default_retry_delays=(0.1,),
)
def ignorable_after_a_retry(self: Any, x: str) -> int:
    """Fail the first attempt, succeed the retry: its success opens the window if the call asks."""
    if not self.request.retries:
        msg = f"first attempt of {x} fails"
        raise FlakyError(msg)
    return int(self.request.retries)


@app.task(
    bind=True,
    unique=True,
    stale_time_limit=60,
    autoretry_for=(FlakyError,),
    default_retry_delays=(0.1, 0.2),
)
def flaky(self: Any, fail_times: int) -> int:
    if self.request.retries < fail_times:
        msg = f"attempt {self.request.retries} fails"
        raise FlakyError(msg)
    return int(self.request.retries)


@app.task(bind=True, unique=True, stale_time_limit=60)
def manual_retry(self: Any, fail_times: int) -> int:
    if self.request.retries < fail_times:
        raise self.retry(exc=FlakyError("manual"), countdown=0.1, max_retries=3)
    return int(self.request.retries)


@app.task(unique=True, stale_time_limit=60)
def always_fails(x: int) -> None:
    msg = f"always fails with {x}"
    raise ValueError(msg)


@app.task(bind=True, ignore_task_timedelta=timedelta(seconds=60))
def ignore_by_hand(self: Any, flag: bool) -> bool:
    if flag:
        self.set_ignore_task()
    return flag


@app.task()
def sleeps_forever() -> None:
    _wait_for_gate("never-opened")


class HookRecordingTask(DjangoTask):
    """Overrides every hook without calling super(): the bus must still see every event."""

    hook_calls: ClassVar[list[str]] = []

    def on_invocation_apply(self, *args: Any) -> None:
        self.hook_calls.append("invocation_apply")

    def on_invocation_trigger(self, *args: Any) -> None:
        self.hook_calls.append("invocation_trigger")

    def on_task_start(self, *args: Any) -> None:
        self.hook_calls.append("task_start")

    def on_task_success(self, *args: Any) -> None:
        self.hook_calls.append("task_success")


@app.task(base=HookRecordingTask)
def caller_hook_recording(x: int) -> int:
    return x


def _record(signal_name: str) -> Any:
    def record(sender: Any, **kwargs: Any) -> None:
        event = {
            "signal": signal_name,
            "task_name": sender.name,
            "invocation_id": kwargs.get("invocation_id"),
            "task_id": kwargs.get("task_id"),
            "retries": sender.request.retries,
        }
        if kwargs.get("exc") is not None:
            event["exc"] = repr(kwargs["exc"])
        if kwargs.get("eta") is not None:
            event["eta"] = kwargs["eta"].isoformat()
        _redis().rpush(EVENTS_KEY, json.dumps(event))

    return record


@worker_init.connect
def record_events(**_: Any) -> None:
    """In a worker process, record every event of the bus in Redis for the tests to read."""
    for signal in signals.ALL_SIGNALS:
        signal.connect(_record(signal.name), weak=False)


LOG_KEY = f"{settings.KEY_PREFIX}log"


class _RedisLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _redis().rpush(LOG_KEY, record.getMessage())


@worker_init.connect
def record_log(**_: Any) -> None:
    """In a worker process, record what celery-events logs in Redis for the tests to read."""
    logging.getLogger("celery_events").addHandler(_RedisLogHandler(logging.INFO))


def worker_log() -> list[str]:
    """What the workers' celery_events logger said, in order."""
    return [raw.decode() for raw in _redis().lrange(LOG_KEY, 0, -1)]


# Tasks of the exporters' tests (tests/test_exporter_*.py).


@app.task()
def logs_with_structlog(message: str) -> dict[str, Any]:
    """Log ``message`` through structlog; return the structlog context the task ran in."""
    structlog.get_logger("tests").info(message)
    return structlog.contextvars.get_contextvars()


@app.task()
def calls_flaky_child(queue: str, fail_times: int) -> str:
    """Log a line, then call ``flaky(fail_times)`` on ``queue``; return the child's task id."""
    structlog.get_logger("tests").info("calling_child")
    return str(flaky.apply_async(args=(fail_times,), queue=queue).task_id)


def refusing_broker_url() -> str:
    """Return the URL of a Redis broker on a port nothing listens on: a publish fails at once."""
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


@app.task()
def triggers_on_a_refusing_broker() -> None:
    """Call ``caller_plain`` through a broker connection nothing listens on: its trigger fails."""
    with app.connection_for_write(
        refusing_broker_url(), transport_options={"max_retries": 0}
    ) as connection:
        caller_plain.apply_async(args=(1,), connection=connection, retry=False)


@app.task()
def raises_ignore() -> None:
    """End the attempt with Celery's Ignore: no end event of the bus follows its start."""
    raise Ignore


@app.task()
def current_span_id() -> str:
    """Return the id of the OpenTelemetry span current while the task runs, in hex."""
    return format(trace.get_current_span().get_span_context().span_id, "016x")


# Tasks of the lock tests (tests/test_lock*.py, tests/test_cleanup.py).

LOCKS_HOLDING_KEY = f"{settings.KEY_PREFIX}locks-holding:"


def _record_holding(task: Any, name: str) -> None:
    """Record whether the running attempt's task id holds the unique lock its message carries."""
    holder = get_lock_store().holder(read_header(task.request, UNIQUE_KEY_HEADER))
    _redis().rpush(LOCKS_HOLDING_KEY + name, json.dumps(holder == task.request.id))


def attempts_holding(name: str) -> list[bool]:
    """Whether each attempt of the ``locks_*_retry`` call ``name`` held its own lock, in order."""
    return [json.loads(raw) for raw in _redis().lrange(LOCKS_HOLDING_KEY + name, 0, -1)]


@app.task(unique=True, stale_time_limit=60)
def locks_unique(x: str) -> str:
    return x


@app.task(unique=True, stale_time_limit=60)
def locks_unique_pair(first: str, second: str) -> str:
    return first + second


@app.task(unique=True, stale_time_limit=60)
def locks_gated(gate: str) -> str:
    _wait_for_gate(gate)
    return gate


@app.task()
def locks_plain(x: str) -> str:
    return x


@app.task(ignore_task_after_success=True, ignore_task_timedelta=timedelta(seconds=2))
def locks_ignored_briefly(x: str) -> str:
    return x


@app.task(
    bind=True,
    unique=True,
    stale_time_limit=60,
    autoretry_for=(FlakyError,),
    default_retry_delays=(0.1, 0.1),
)
def locks_autoretry(self: Any, name: str, fail_times: int) -> int:
    _record_holding(self, name)
    if self.request.retries < fail_times:
        msg = f"attempt {self.request.retries} fails"
        raise FlakyError(msg)
    return int(self.request.retries)


@app.task(bind=True, unique=True, stale_time_limit=60)
def locks_manual_retry(self: Any, name: str, fail_times: int) -> int:
    _record_holding(self, name)
    if self.request.retries < fail_times:
        raise self.retry(exc=FlakyError("manual"), countdown=0.1, max_retries=2)
    return int(self.request.retries)


@app.task(bind=True, unique=True, stale_time_limit=60)
def locks_requeues_itself(self: Any, x: str) -> str | None:
    """Call itself again with the same argument; return the task id that call got."""
    return str(self.apply_async(args=(x,)).id)


@app.task(unique=True, stale_time_limit=60)
def locks_kills_its_process(x: str) -> None:
    """Kill the pool process running it: only ever call it on a prefork worker's queue."""
    os.kill(os.getpid(), SIGKILL)


@app.task(unique=True, stale_time_limit=60, time_limit=1)
def locks_outlives_time_limit(x: str) -> None:
    """Wait past its hard time limit: only ever call it on a prefork worker's queue."""
    _wait_for_gate(f"never-opened-{x}")


# The tasks of the tests of ``manage.py celery_events``: unique, with an ignore window.
OPS_OPTIONS: dict[str, Any] = {
    "unique": True,
    "stale_time_limit": 60,
    "ignore_task_after_success": True,
    "ignore_task_timedelta": timedelta(seconds=120),
}


@app.task(**OPS_OPTIONS)
def ops_unique_ignored(x: int, label: str = "") -> int:
    """A unique task with an ignore window, for the tests of ``manage.py celery_events``."""
    return x


# Braces in a name are what Redis Cluster reads as a hash tag in a key that contains it.
@app.task(name="tests.tasks.reports.{daily}", **OPS_OPTIONS)
def ops_braced_name(x: int) -> int:
    """A task whose name has braces, as ``reports.{daily}``."""
    return x


# Tasks of the canvas, gate and time-limit tests (tests/test_canvas.py, tests/test_worker.py): a
# prefork worker of two processes consumes the "concurrent" queue, so that a canvas member can be
# checked while the call it joined runs.

CONCURRENT_QUEUE = "concurrent"
STARTED_KEY = f"{settings.KEY_PREFIX}started:"
ERRBACKS_KEY = f"{settings.KEY_PREFIX}errbacks"


def has_started(gate: str) -> bool:
    """Whether a ``concurrent_gated*`` task waiting on ``gate`` has started its body."""
    return bool(_redis().exists(STARTED_KEY + gate))


def _start_and_wait(gate: str) -> None:
    _redis().set(STARTED_KEY + gate, 1, ex=120)
    _wait_for_gate(gate)


@app.task(unique=True, stale_time_limit=60)
def concurrent_gated(gate: str, value: int) -> int:
    _start_and_wait(gate)
    return value


@app.task(unique=True, stale_time_limit=60)
def concurrent_gated_fails(gate: str) -> None:
    _start_and_wait(gate)
    msg = f"{gate} fails"
    raise ValueError(msg)


@app.task()
def concurrent_add(x: int, y: int) -> int:
    return x + y


@app.task()
def concurrent_collect(values: list[Any]) -> list[Any]:
    return list(values)


@app.task()
def concurrent_describe(value: Any) -> str:
    return repr(value)


@app.task(ignore_task_after_success=True, ignore_task_timedelta=timedelta(seconds=60))
def concurrent_ignorable(x: int) -> int:
    return x


@app.task()
def concurrent_record_errback(task_id: str) -> None:
    _redis().rpush(ERRBACKS_KEY, task_id)


def errbacks() -> list[str]:
    """The task ids ``concurrent_record_errback`` was called with, in order."""
    return [raw.decode() for raw in _redis().lrange(ERRBACKS_KEY, 0, -1)]


@app.task(
    bind=True,
    unique=True,
    stale_time_limit=60,
    autoretry_for=(FlakyError,),
    default_retry_delays=(0.1,),
)
def concurrent_flaky(self: Any, x: str) -> int:
    """Fail the first attempt, succeed the second; return the attempt's retries."""
    if not self.request.retries:
        msg = f"first attempt of {x} fails"
        raise FlakyError(msg)
    return int(self.request.retries)


@app.task(soft_time_limit=1)
def concurrent_soft_limited() -> str:
    return "ran to its end"


def _slow_start_receiver(sender: Any, **_: Any) -> None:
    time.sleep(30)  # the soft time limit fires here, in a receiver of task_start


@worker_init.connect
def slow_start_of_soft_limited(**_: Any) -> None:
    """In a worker process, make the start of ``concurrent_soft_limited`` outlast its limit."""
    signals.task_start.connect(_slow_start_receiver, sender=concurrent_soft_limited, weak=False)


# The task of the gate and redelivery tests (tests/test_worker.py): each body records how many
# bodies of its key run at once.

RUNNING_KEY = f"{settings.KEY_PREFIX}running:"
BODIES_KEY = f"{settings.KEY_PREFIX}bodies:"


def bodies(x: str) -> list[int]:
    """How many bodies of ``x`` ran, the one starting included, as each body started."""
    return [int(raw) for raw in _redis().lrange(BODIES_KEY + x, 0, -1)]


def forget_bodies(x: str) -> None:
    """Forget the bodies of ``x`` so far: one was killed, and never ended."""
    _redis().delete(BODIES_KEY + x, RUNNING_KEY + x)


def _counted(task_id: str, x: str) -> str:
    """Record a body's start, wait on gate ``x``, record its end; return ``task_id``."""
    client = _redis()
    client.rpush(BODIES_KEY + x, client.incr(RUNNING_KEY + x))
    try:
        _wait_for_gate(x)
    finally:
        client.decr(RUNNING_KEY + x)
    return task_id


@app.task(bind=True, unique=True, stale_time_limit=60, acks_late=True)
def concurrent_counted(self: Any, x: str) -> str:
    """Record its start, wait on gate ``x``, record its end; return its task id."""
    return _counted(str(self.request.id), x)


# The lease tests (tests/test_lease.py).

RECORDED_KEY = f"{settings.KEY_PREFIX}recorded"


def recorded() -> list[Any]:
    """The values ``*_record`` tasks were called with, in order."""
    return [json.loads(raw) for raw in _redis().lrange(RECORDED_KEY, 0, -1)]


@app.task(unique=True, stale_time_limit=5, time_limit=2)
def lease_time_limited(x: str) -> str:
    """Its automatic expiry comes 3 s after it is due (stale_time_limit less time_limit)."""
    return x


@app.task(bind=True, unique=True, stale_time_limit=5, time_limit=2)
def lease_retried_late(self: Any, x: str) -> int:
    """Retried once, 4 s later: past its first message's automatic expiry."""
    if not self.request.retries:
        raise self.retry(countdown=4, max_retries=1)
    return int(self.request.retries)


@app.task(bind=True, unique=True, stale_time_limit=60)
def lease_replaced(self: Any, gate: str) -> str:
    """Replaces itself with the same call; the replacement waits on ``gate``."""
    if not self.request.replaced_task_nesting:
        raise self.replace(lease_replaced.si(gate))
    _start_and_wait(gate)
    return str(self.request.id)


@app.task(bind=True, unique=True, stale_time_limit=60)
def nobackend_counted(self: Any, x: str) -> str:
    """``concurrent_counted`` on the worker without a result backend."""
    return _counted(str(self.request.id), x)


@app.task()
def nobackend_record(value: Any) -> None:
    _redis().rpush(RECORDED_KEY, json.dumps(value))


@app.task()
def concurrent_record(value: Any) -> None:
    _redis().rpush(RECORDED_KEY, json.dumps(value))


@app.task(bind=True, unique=True, stale_time_limit=60, acks_late=True)
def visibility_counted(self: Any, x: str) -> str:
    """``concurrent_counted`` on the worker whose Redis broker delivers messages again."""
    return _counted(str(self.request.id), x)
