"""LockedPersistentScheduler: one beat of many schedules, takes over from a dead one, never twice.

Most tests drive real scheduler objects against the real Redis and broker, in this process; the
last one runs two ``celery beat`` processes and kills the one that holds the lock.
"""

from __future__ import annotations

import base64
import json
import os
import shelve
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import schedule
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from celery_events.beat import LockedPersistentScheduler, _LockLostError
from celery_events.locks import LockStoreUnavailableError
from tests import beat_app
from tests.conftest import wait_for
from tests.lock_helpers import own_queue, redis_cache, throwaway_redis, use_cache

LOCK_TIMEOUT = 2
LOCK_SLEEP = 0.1
MAX_INTERVAL = 0.5


@pytest.fixture(name="queue")
def fixture_queue(redis_client):
    with own_queue(redis_client) as name:
        yield name


@pytest.fixture(name="lock_key")
def fixture_lock_key(settings):
    """A beat lock of the test's own, with times short enough to watch it change hands."""
    settings.DJANGO_CELERY_EXTENSIONS_BEATER_LOCK_KEY = f"test-beat|{uuid.uuid4().hex}"
    settings.DJANGO_CELERY_EXTENSIONS_LOCK_TIMEOUT = LOCK_TIMEOUT
    settings.DJANGO_CELERY_EXTENSIONS_LOCK_SLEEP = LOCK_SLEEP
    return settings.DJANGO_CELERY_EXTENSIONS_BEATER_LOCK_KEY


@pytest.fixture(name="beat_schedule")
def fixture_beat_schedule(celery_app, queue):
    """One entry, due once a second, sending to the test's queue."""
    before = celery_app.conf.beat_schedule
    celery_app.conf.beat_schedule = beat_app.slot_entries(queue, tick=1)
    yield
    celery_app.conf.beat_schedule = before


@pytest.fixture(name="make_scheduler")
def fixture_make_scheduler(celery_app, lock_key, beat_schedule, tmp_path):
    """Create schedulers, each with its own schedule file; close them all at the end."""
    schedulers = []

    def make(name):
        scheduler = LockedPersistentScheduler(
            app=celery_app, schedule_filename=str(tmp_path / name), max_interval=MAX_INTERVAL
        )
        schedulers.append(scheduler)
        return scheduler

    yield make
    for scheduler in schedulers:
        scheduler.close()


@pytest.fixture(name="lock")
def fixture_lock(redis_client, lock_key):
    """Read and write the beat lock's Redis key, as another beat or an expiry would."""

    class Lock:
        key = caches["default"].make_key(lock_key)

        def holder(self):
            value = redis_client.get(self.key)
            return value and value.decode()

        def take_for_another_beat(self):
            redis_client.set(self.key, "another beat", px=LOCK_TIMEOUT * 1000)

        def expire(self):
            redis_client.delete(self.key)

        def ttl_ms(self):
            return redis_client.pttl(self.key)

    return Lock()


def _sends(redis_client, queue):
    """Return ``(entry, slot, pid)`` of each message beat sent to ``queue``, oldest first."""
    messages = reversed(redis_client.lrange(f"{django_settings.KEY_PREFIX}{queue}", 0, -1))
    bodies = (json.loads(base64.b64decode(json.loads(m)["body"])) for m in messages)
    return [tuple(args) for args, _, _ in bodies]


def _tick_until_sent(scheduler, redis_client, queue, count):
    """Tick ``scheduler`` as beat does until ``queue`` holds ``count`` messages."""

    def sent():
        scheduler.tick()
        return len(_sends(redis_client, queue)) >= count

    wait_for(sent, f"{count} sends")
    return _sends(redis_client, queue)


def _next_slot(seconds=1.0):
    """Wait until the next slot of ``seconds`` starts, so that an entry is due again."""
    slot = int(time.time() // seconds)
    wait_for(lambda: int(time.time() // seconds) > slot, "the next slot")


def test_holder_sends_and_standby_polls_every_lock_sleep(make_scheduler, redis_client, queue):
    holder, standby = make_scheduler("holder"), make_scheduler("standby")

    sends = _tick_until_sent(holder, redis_client, queue, 1)
    _next_slot()

    assert standby.tick() == LOCK_SLEEP
    assert _sends(redis_client, queue) == sends
    assert [pid for _, _, pid in sends] == [os.getpid()]


def test_holder_renews_its_lock_to_lock_timeout_on_every_tick(make_scheduler, lock, redis_client):
    scheduler = make_scheduler("holder")
    redis_client.pexpire(lock.key, 3_600_000)

    scheduler.tick()

    assert 0 < lock.ttl_ms() <= LOCK_TIMEOUT * 1000


@pytest.fixture(name="hourly_entry")
def fixture_hourly_entry(celery_app, beat_schedule, queue):
    """An entry beside the schedule's, due an hour after the scheduler starts."""
    celery_app.conf.beat_schedule = {
        **celery_app.conf.beat_schedule,
        "hourly": {
            "task": beat_app.TICK_TASK,
            "schedule": schedule(timedelta(hours=1)),
            "args": ("hourly", 0, 0),
            "options": {"queue": queue},
        },
    }


def _last_runs_ttl_ms(scheduler, redis_client):
    return redis_client.pttl(scheduler._beat_lock._keys[1])


def test_recorded_runs_live_until_the_latest_next_due_time(
    hourly_entry, make_scheduler, redis_client, queue
):
    holder = make_scheduler("holder")
    _tick_until_sent(holder, redis_client, queue, 1)

    # The run of "tick" recorded; it lives as long as the hourly entry's next due time matters.
    assert LOCK_TIMEOUT * 1000 < _last_runs_ttl_ms(holder, redis_client) <= 3_600_000

    # Runs recorded with no time to live (by an earlier version) get one at the next tick.
    redis_client.persist(holder._beat_lock._keys[1])
    holder.tick()
    assert LOCK_TIMEOUT * 1000 < _last_runs_ttl_ms(holder, redis_client) <= 3_600_000


def test_recorded_runs_of_a_schedule_due_within_the_lock_timeout_live_as_long_as_the_lock(
    make_scheduler, redis_client, queue
):
    holder = make_scheduler("holder")
    _tick_until_sent(holder, redis_client, queue, 1)

    assert 0 < _last_runs_ttl_ms(holder, redis_client) <= LOCK_TIMEOUT * 1000


def test_holder_that_lost_its_lock_stops_sending_until_it_holds_it_again(
    make_scheduler, lock, redis_client, queue
):
    scheduler = make_scheduler("holder")
    first = _tick_until_sent(scheduler, redis_client, queue, 1)
    lock.take_for_another_beat()
    _next_slot()

    assert scheduler.tick() == LOCK_SLEEP
    assert scheduler.tick() == LOCK_SLEEP
    assert _sends(redis_client, queue) == first

    lock.expire()
    sends = _tick_until_sent(scheduler, redis_client, queue, 2)
    assert lock.holder() != "another beat"
    assert len({slot for _, slot, _ in sends}) == 2


def test_lock_lost_just_before_a_send_refuses_the_send(make_scheduler, lock):
    scheduler = make_scheduler("holder")
    entry = scheduler.schedule["tick"]
    lock.take_for_another_beat()

    with pytest.raises(_LockLostError):
        scheduler.reserve(entry)

    assert scheduler.schedule["tick"] is entry


def test_standby_takes_over_from_the_runs_its_holder_recorded(
    make_scheduler, lock, redis_client, queue
):
    holder, standby = make_scheduler("holder"), make_scheduler("standby")
    sends = _tick_until_sent(holder, redis_client, queue, 1)
    lock.expire()  # the holder died; its lock ran out

    standby.tick()
    standby.tick()

    assert lock.holder() == standby._beat_lock.token
    # The standby's own schedule file says the slot the holder sent is due: the run recorded
    # beside the lock says it was sent.
    assert _sends(redis_client, queue) == sends
    _next_slot()
    sends = _tick_until_sent(standby, redis_client, queue, 2)
    assert len({slot for _, slot, _ in sends}) == 2


def test_close_after_the_lock_was_lost_raises_nothing_and_syncs(
    make_scheduler, lock, redis_client, queue, tmp_path
):
    scheduler = make_scheduler("holder")
    _tick_until_sent(scheduler, redis_client, queue, 1)
    last_run_at = scheduler.schedule["tick"].last_run_at
    lock.take_for_another_beat()

    scheduler.close()

    assert lock.holder() == "another beat"
    with shelve.open(str(tmp_path / "holder")) as schedule_file:  # noqa: S301 - our own file
        assert schedule_file["entries"]["tick"].last_run_at == last_run_at


def test_close_releases_the_lock_of_its_holder(make_scheduler, lock):
    scheduler = make_scheduler("holder")
    assert lock.holder() == scheduler._beat_lock.token

    scheduler.close()

    assert lock.holder() is None


def test_lost_redis_counts_as_a_lost_lock(make_scheduler, settings):
    with throwaway_redis() as (url, process):
        use_cache(settings, "beat", redis_cache(url))
        scheduler = make_scheduler("holder")
        process.kill()
        process.wait()

        assert scheduler.tick() == LOCK_SLEEP
        scheduler.close()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("LOCK_TIMEOUT", MAX_INTERVAL, r"LOCK_TIMEOUT \(0.5 s\) must be greater than .* \(0.5 s\)"),
        ("LOCK_SLEEP", 0, r"LOCK_SLEEP must be more than 0 seconds, not 0$"),
        ("CACHE_NAME", "locmem", r"cache 'locmem' .* is a django.core.cache.backends.locmem"),
    ],
)
def test_startup_refuses_a_bad_configuration(make_scheduler, settings, setting, value, message):
    setattr(settings, f"DJANGO_CELERY_EXTENSIONS_{setting}", value)

    with pytest.raises(ImproperlyConfigured, match=message):
        make_scheduler("refused")


def test_startup_refuses_a_redis_it_cannot_reach(make_scheduler, settings):
    with throwaway_redis() as (url, process):
        use_cache(settings, "beat", redis_cache(url))
        process.kill()
        process.wait()

        with pytest.raises(LockStoreUnavailableError, match="cache 'beat' could not take"):
            make_scheduler("refused")


def test_lazy_scheduler_touches_no_redis(celery_app, lock, tmp_path):
    # Celery makes lazy schedulers (never set up, never closed) to show beat's banner.
    LockedPersistentScheduler(app=celery_app, schedule_filename=str(tmp_path / "lazy"), lazy=True)

    assert lock.holder() is None


@pytest.fixture(name="start_beat")
def fixture_start_beat(lock_key, queue, tmp_path):
    """Start ``celery beat`` processes with the test's lock and queue; stop them at the end."""
    processes = []

    def start(name, *, scheduler_setting=False, **extra_env):
        """Start a beat; ``scheduler_setting``: name the scheduler in settings, not with -S."""
        log = tmp_path / f"{name}.log"
        scheduler = (
            {"BEAT_TEST_SCHEDULER_SETTING": "1"}
            if scheduler_setting
            else {"BEAT_TEST_SCHEDULER_OPTION": "celery_events.beat.LockedPersistentScheduler"}
        )
        env = {
            **os.environ,
            **extra_env,
            **scheduler,
            "DJANGO_SETTINGS_MODULE": "tests.beat_settings",
            "BEAT_TEST_QUEUE": queue,
            "BEAT_TEST_LOCK_KEY": lock_key,
            "BEAT_TEST_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
            "BEAT_TEST_LOCK_SLEEP": str(LOCK_SLEEP),
        }
        with log.open("wb") as output:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [
                    *(sys.executable, "-m", "celery", "-A", "tests.beat_app", "beat"),
                    *(() if scheduler_setting else ("-S", scheduler["BEAT_TEST_SCHEDULER_OPTION"])),
                    *("-s", str(tmp_path / f"{name}-schedule"), "--max-interval", "1"),
                    *("-l", "info"),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=Path(__file__).parent.parent,
            )
        processes.append(process)
        return process, log

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_beat(beat, condition, what):
    """Wait for ``condition``; fail with the beat's log if the beat process exits first."""
    process, log = beat
    wait_for(lambda: process.poll() is not None or condition(), what)
    if process.poll() is not None:
        pytest.fail(f"the beat exited while waiting for {what}:\n{log.read_text()}")


def test_two_beat_processes_hand_over_without_sending_a_due_time_twice(
    start_beat, lock, redis_client, queue
):
    first = start_beat("first")
    _wait_for_beat(first, lock.holder, "the first beat to take the lock")
    second = start_beat("second")
    _wait_for_beat(second, lambda: b"waits for lock" in second[1].read_bytes(), "a waiting beat")
    # A slow slot that starts now: the second beat's own schedule says it is due, and the
    # first beat sends it.
    slot = int(time.time() // 4)
    _wait_for_beat(
        first,
        lambda: any(e == "slow" and s > slot for e, s, _ in _sends(redis_client, queue)),
        "the first beat to send a slow slot",
    )

    first[0].send_signal(signal.SIGKILL)
    first[0].wait()
    before = _sends(redis_client, queue)
    second_pid = second[0].pid
    _wait_for_beat(
        second,
        lambda: len({s for _, s, p in _sends(redis_client, queue) if p == second_pid}) >= 2,
        "the second beat to send in two slots",
    )

    sends = _sends(redis_client, queue)
    assert {pid for _, _, pid in before} == {first[0].pid}
    assert {pid for _, _, pid in sends[len(before) :]} == {second_pid}
    assert len({(entry, slot) for entry, slot, _ in sends}) == len(sends)


@pytest.mark.parametrize("scheduler_setting", [False, True], ids=["-S", "CELERY_BEAT_SCHEDULER"])
@pytest.mark.parametrize(
    ("cache_name", "error"),
    [("locmem", "ImproperlyConfigured"), ("unreachable", "LockStoreUnavailableError")],
)
def test_beat_process_refuses_to_start_without_a_redis_lock(
    start_beat, cache_name, error, scheduler_setting
):
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        unreachable = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    process, log = start_beat(
        "refused",
        scheduler_setting=scheduler_setting,
        BEAT_TEST_CACHE_NAME=cache_name,
        BEAT_TEST_UNREACHABLE_REDIS_URL=unreachable,
    )

    assert process.wait(timeout=60) != 0
    assert error in log.read_text()


def test_locks_page_names_the_scheduler_in_settings_as_the_beat_test_does():
    line = 'CELERY_BEAT_SCHEDULER = "celery_events.beat.LockedPersistentScheduler"'
    tests = Path(__file__).parent

    assert line in (tests.parent / "docs" / "locks.md").read_text()
    assert line in (tests / "beat_settings.py").read_text()
