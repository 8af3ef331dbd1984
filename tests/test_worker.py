"""Where an attempt starts: the gate of unique tasks, redeliveries, task control from the bus.

Real workers on real brokers: the prefork worker of two processes on Redis (conftest), and, for
the redelivery after a whole worker was killed, workers of this module's own on RabbitMQ.
"""

from __future__ import annotations

import os
import uuid
from signal import SIGKILL

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from celery_events.config import settings as celery_events_settings
from celery_events.locks import get_lock_store
from tests import tasks
from tests.conftest import AMQP_URL, running_worker, wait_for
from tests.services import restartable_redis

pytestmark = pytest.mark.worker

REDELIVERY_QUEUE = f"redelivery-{settings.KEY_PREFIX.rstrip(':')}"


def _key(argument):
    return tasks.concurrent_counted.unique_key_generator(
        celery_events_settings.UNIQUE_TASK_KEY_PREFIX, (argument,), None
    )


def _logged(*words):
    return any(all(word in line for word in words) for line in tasks.worker_log())


def _free_lock_of(result, argument):
    """Free the lock of ``result``'s call, as if it expired."""
    get_lock_store().release(
        task_id=result.id, unique_key=_key(argument), ignore_key=None, ignore_ttl=None
    )


def _assert_joined_ran_once(argument, joiner, holder):
    """Let ``holder`` finish; both calls get its task id, and one body of ``argument`` ran."""
    _joined_or_overlapped(argument, joiner.id, holder.id)
    tasks.open_gate(argument)
    assert holder.get(timeout=30) == holder.id
    assert joiner.get(timeout=30) == holder.id
    assert tasks.bodies(argument) == [1]


def _joined_or_overlapped(argument, joiner, holder):
    """Wait until ``joiner`` joined ``holder`` on the worker, or two bodies of one key ran."""
    wait_for(
        lambda: _logged(joiner, f"held by {holder}") or max(tasks.bodies(argument), default=0) > 1,
        f"task {joiner} to find its lock held by {holder}",
    )


@pytest.fixture(name="redelivery_workers")
def fixture_redelivery_workers(amqp_producer, tmp_path):
    """Start workers of this test's own on RabbitMQ; delete their queue afterwards."""

    def start(name, *worker_args):
        return running_worker(
            tmp_path / f"{name}.log",
            REDELIVERY_QUEUE,
            env={"CELERY_EVENTS_TEST_BROKER_URL": AMQP_URL},
            worker_args=("-P", "prefork", *worker_args),
            publish_options={"producer": amqp_producer},
        )

    yield start
    amqp_producer.channel.queue_delete(REDELIVERY_QUEUE)
    amqp_producer.channel.exchange_delete(REDELIVERY_QUEUE)


def test_redelivered_message_whose_lock_expired_never_runs_beside_a_newer_call(
    redelivery_workers, amqp_producer
):
    argument = uuid.uuid4().hex
    publish = {"queue": REDELIVERY_QUEUE, "producer": amqp_producer}
    with redelivery_workers("killed", "-c", "1") as killed:
        # A lock that expires soon after the worker dies; the second call's lives 60 s.
        first = tasks.concurrent_counted.apply_async(
            args=(argument,), stale_time_limit=2, **publish
        )
        wait_for(lambda: tasks.bodies(argument) == [1], "the first body to start")
        os.killpg(killed.pid, SIGKILL)  # the whole worker: nothing releases the lock
        killed.wait()
    tasks.forget_bodies(argument)  # the killed body never ended
    wait_for(lambda: get_lock_store().holder(_key(argument)) is None, "the lock to expire")
    second = tasks.concurrent_counted.apply_async(args=(argument,), **publish)

    # RabbitMQ delivers the first message again (acks_late), beside the second.
    with redelivery_workers("restarted", "-c", "2"):
        _assert_joined_ran_once(argument, first, second)


def test_message_whose_lock_was_taken_while_it_waited_joins_the_new_holder(concurrent_worker):
    argument = uuid.uuid4().hex
    first = tasks.concurrent_counted.apply_async(args=(argument,), countdown=2)
    _free_lock_of(first, argument)  # while the message waits for its eta, then taken anew
    second = tasks.concurrent_counted.apply_async(args=(argument,))
    assert second.id != first.id

    _assert_joined_ran_once(argument, first, second)


def test_message_whose_lock_expired_while_it_waited_takes_it_again(concurrent_worker):
    argument = uuid.uuid4().hex
    tasks.open_gate(argument)
    result = tasks.concurrent_counted.apply_async(args=(argument,), countdown=1)
    _free_lock_of(result, argument)

    assert result.get(timeout=30) == result.id
    assert _logged(result.id, "took it again")
    assert tasks.bodies(argument) == [1]
    assert get_lock_store().holder(_key(argument)) is None


def test_soft_time_limit_in_a_slow_task_start_receiver_fails_the_task(concurrent_worker):
    result = tasks.concurrent_soft_limited.apply_async()

    with pytest.raises(SoftTimeLimitExceeded):
        result.get(timeout=30)


def test_attempt_whose_gate_cannot_reach_the_lock_store_waits_and_runs_once_it_is_back(
    tmp_path, attempt_events
):
    queue = f"unreachable-locks-{uuid.uuid4().hex[:8]}"
    argument = uuid.uuid4().hex
    tasks.open_gate(argument)
    with (
        restartable_redis() as lock_store,
        running_worker(
            tmp_path / "worker.log", queue, env={"CELERY_EVENTS_TEST_CACHE_URL": lock_store.url}
        ),
    ):
        lock_store.kill()  # the worker's lock store; the broker and the results stay up
        result = tasks.concurrent_counted.apply_async(args=(argument,), queue=queue)
        wait_for(
            lambda: _logged(result.id, "could not claim its unique lock"),
            "the gate to find the lock store unreachable",
        )
        unchecked = tasks.bodies(argument)
        lock_store.start()  # back, empty, on its port

        assert result.get(timeout=60) == result.id
        events = attempt_events(result.invocation_id)

    assert unchecked == []  # no body ran while the lock could not be checked
    assert [event["signal"] for event in events] == ["task_start", "task_success"]
    assert tasks.bodies(argument) == [1]
