"""Unique and ignore-after-success calls through faults: expiry, failed publish, retries, bursts."""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from celery_events.config import settings
from celery_events.locks import get_lock_store
from tests import tasks
from tests.conftest import wait_for
from tests.lock_helpers import own_queue, published, redis_cache, throwaway_redis, use_cache

BURST = 16


@pytest.fixture(name="queue")
def fixture_queue(redis_client):
    with own_queue(redis_client) as name:
        yield name


def _unique_key(task, *args, **kwargs):
    return task.unique_key_generator(settings.UNIQUE_TASK_KEY_PREFIX, args, kwargs)


def _holder(task, *args, **kwargs):
    return get_lock_store().holder(_unique_key(task, *args, **kwargs))


def _final_event(worker_events, result):
    def final():
        events = worker_events(result.invocation_id)
        ends = [event for event in events if event["signal"] in {"task_success", "task_failure"}]
        return ends[-1] if ends else None

    return wait_for(final, f"the end of task {result.id}")


@pytest.mark.worker
def test_body_that_outlives_its_stale_time_limit_keeps_its_lock(worker, worker_events):
    gate, stale_time_limit = uuid.uuid4().hex, 3
    first = tasks.locks_gated.apply_async(args=(gate,), stale_time_limit=stale_time_limit)
    wait_for(lambda: worker_events(first.invocation_id), "the first call to start")

    # The body runs three stale time limits: its worker renews the lease all along.
    holders = set()
    watched_until = time.monotonic() + 3 * stale_time_limit
    while time.monotonic() < watched_until:
        holders.add(_holder(tasks.locks_gated, gate))
        time.sleep(0.2)
    second = tasks.locks_gated.apply_async(args=(gate,))
    tasks.open_gate(gate)

    assert holders == {first.id}
    assert second.id == first.id  # a call made then joins the running body
    assert _final_event(worker_events, first)["signal"] == "task_success"
    assert first.get(timeout=30) == gate
    wait_for(lambda: _holder(tasks.locks_gated, gate) is None, "the call to free its lock")


def test_failed_publish_releases_the_lock_and_the_next_call_publishes(
    refusing_broker, redis_client, queue
):
    argument = uuid.uuid4().hex

    with pytest.raises(OperationalError):
        tasks.locks_unique.apply_async(
            args=(argument,), queue=queue, connection=refusing_broker, retry=False
        )

    assert _holder(tasks.locks_unique, argument) is None
    result = tasks.locks_unique.apply_async(args=(argument,), queue=queue)
    assert published(redis_client, queue) == [result.id]
    assert _holder(tasks.locks_unique, argument) == result.id


@pytest.mark.worker
@pytest.mark.parametrize(
    ("task", "fail_times", "succeeds"),
    [
        (tasks.locks_autoretry, 2, True),
        (tasks.locks_autoretry, 5, False),
        (tasks.locks_manual_retry, 2, True),
        (tasks.locks_manual_retry, 5, False),
    ],
    ids=["autoretry-success", "autoretry-failure", "manual-success", "manual-failure"],
)
def test_retry_chain_holds_the_lock_until_its_final_attempt(
    worker, worker_events, task, fail_times, succeeds
):
    name = uuid.uuid4().hex
    result = task.apply_async(args=(name, fail_times))

    final = _final_event(worker_events, result)

    assert final["signal"] == ("task_success" if succeeds else "task_failure")
    starts = [e for e in worker_events(result.invocation_id) if e["signal"] == "task_start"]
    # Three attempts, each from a message published again with the next retry count.
    assert [event["retries"] for event in starts] == [0, 1, 2]
    assert {event["task_id"] for event in starts} == {result.id}
    assert tasks.attempts_holding(name) == [True, True, True]
    assert _holder(task, name, fail_times) is None


@pytest.mark.worker
def test_burst_after_a_success_is_ignored_until_the_window_closes(worker):
    argument = uuid.uuid4().hex
    task = tasks.locks_ignored_briefly
    assert task.apply_async(args=(argument,)).get(timeout=30) == argument

    with ThreadPoolExecutor(BURST) as pool:
        burst = list(pool.map(lambda _: task.apply_async(args=(argument,)), range(BURST)))

    assert {(call.state, call.id) for call in burst} == {("IGNORED", None)}
    after = wait_for(
        lambda: (call := task.apply_async(args=(argument,))).state != "IGNORED" and call,
        "a call after the ignore window",
    )
    assert after.get(timeout=30) == argument


@pytest.mark.worker
def test_task_that_calls_itself_again_joins_its_own_lock(worker):
    argument = uuid.uuid4().hex
    result = tasks.locks_requeues_itself.apply_async(args=(argument,))

    assert result.get(timeout=30) == result.id
    wait_for(lambda: _holder(tasks.locks_requeues_itself, argument) is None, "the lock's release")


def test_eager_apply_joins_an_asynchronous_holder_and_leaves_its_lock(queue):
    argument = uuid.uuid4().hex
    holder = tasks.locks_unique.apply_async(args=(argument,), queue=queue)

    eager = tasks.locks_unique.apply(args=(argument,))

    assert eager.id == holder.id
    assert _holder(tasks.locks_unique, argument) == holder.id


def test_eager_apply_of_a_free_lock_runs_and_releases_it():
    argument = uuid.uuid4().hex

    result = tasks.locks_unique.apply(args=(argument,))

    assert result.get() == argument
    assert _holder(tasks.locks_unique, argument) is None


@pytest.mark.parametrize(
    "delay",
    [
        lambda: {"countdown": 100},
        lambda: {"eta": timezone.now() + timedelta(seconds=100)},
    ],
    ids=["countdown", "eta"],
)
def test_lock_lives_for_the_stale_time_limit_past_a_delay(redis_client, queue, delay):
    argument = uuid.uuid4().hex

    tasks.locks_unique.apply_async(args=(argument,), queue=queue, **delay())

    lock = get_lock_store().binding.key(_unique_key(tasks.locks_unique, argument))
    assert 60_000 < redis_client.pttl(lock) <= 160_000


def test_same_keyword_arguments_in_another_order_are_the_same_call(queue):
    first = tasks.locks_unique_pair.apply_async(kwargs={"first": "a", "second": "b"}, queue=queue)

    second = tasks.locks_unique_pair.apply_async(kwargs={"second": "b", "first": "a"}, queue=queue)

    assert second.id == first.id


@pytest.mark.parametrize("fails", [False, True], ids=["success", "failure"])
def test_store_lost_before_the_attempt_ends_keeps_its_outcome_and_logs(
    settings, eager, celery_app, caplog, fails
):
    caplog.set_level(logging.ERROR, logger="celery_events")
    with throwaway_redis() as (url, process):
        use_cache(settings, "vanishing", redis_cache(url))

        @celery_app.task(
            name=f"tests.stops_redis_{uuid.uuid4().hex}", unique=True, stale_time_limit=60
        )
        def stops_redis():
            process.kill()
            process.wait()
            if fails:
                msg = "the task's own error"
                raise ValueError(msg)
            return "done"

        result = stops_redis.apply_async()

    if fails:
        assert result.state == "FAILURE"
        with pytest.raises(ValueError, match="the task's own error"):
            result.get()
    else:
        assert result.state == "SUCCESS"
        assert result.get() == "done"
    assert "could not settle the unique lock" in caplog.text
