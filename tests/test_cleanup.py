"""Locks of messages a worker drops before their task ends are freed through Celery's signals.

A prefork worker of this module's own runs them, so that a pool process can be lost or killed
at its hard time limit while the worker goes on.
"""

from __future__ import annotations

import socket
import uuid

import celery
import pytest
from billiard.exceptions import TimeLimitExceeded, WorkerLostError

from celery_events.config import settings
from celery_events.locks import get_lock_store
from tests import tasks
from tests.celery_app import app
from tests.conftest import running_worker, wait_for

pytestmark = pytest.mark.worker

QUEUE = "locks-prefork"
CELERY_VERSION = tuple(int(part) for part in celery.__version__.split(".")[:2])
NODE = f"{QUEUE}@{socket.gethostname()}"


@app.task(name="tests.tasks.locks_unknown_to_the_worker", unique=True, stale_time_limit=60)
def unknown_to_the_worker(x: str) -> str:
    """Registered here only: the worker, which imports tests.tasks, does not know it."""
    return x


@pytest.fixture(name="prefork_worker", scope="module")
def fixture_prefork_worker(redis_client, tmp_path_factory):
    log = tmp_path_factory.mktemp("prefork-worker") / "worker.log"
    with running_worker(
        log, QUEUE, worker_args=("-P", "prefork", "-c", "1", "-n", NODE)
    ) as process:
        yield process


def _lock_freed(task, argument):
    key = task.unique_key_generator(settings.UNIQUE_TASK_KEY_PREFIX, (argument,), None)
    wait_for(lambda: get_lock_store().holder(key) is None, f"the lock of {task.name} to be freed")


def _call(task, **options):
    argument = uuid.uuid4().hex
    result = task.apply_async(args=(argument,), queue=QUEUE, **options)
    assert result.state != "IGNORED"
    return argument, result


def test_revoked_message_frees_its_lock(prefork_worker, celery_app):
    task_id = uuid.uuid4().hex
    # Revoked before it is published: the worker drops the message as soon as it arrives.
    replies = celery_app.control.revoke(task_id, destination=[NODE], reply=True, limit=1)
    assert replies, f"{NODE} did not answer the revoke"

    argument, _ = _call(tasks.locks_unique, task_id=task_id)

    _lock_freed(tasks.locks_unique, argument)


def test_expired_message_frees_its_lock(prefork_worker):
    argument, _ = _call(tasks.locks_unique, countdown=1, expires=0.5)

    _lock_freed(tasks.locks_unique, argument)


def test_message_of_an_unregistered_task_frees_its_lock(prefork_worker):
    argument, _ = _call(unknown_to_the_worker)

    _lock_freed(unknown_to_the_worker, argument)


def test_message_the_worker_does_not_accept_frees_its_lock(prefork_worker):
    argument, _ = _call(tasks.locks_unique, serializer="pickle")

    _lock_freed(tasks.locks_unique, argument)


def test_lost_pool_process_frees_its_lock(prefork_worker):
    argument, _ = _call(tasks.locks_kills_its_process)

    _lock_freed(tasks.locks_kills_its_process, argument)


def test_hard_time_limit_frees_the_lock(prefork_worker):
    argument, _ = _call(tasks.locks_outlives_time_limit)

    _lock_freed(tasks.locks_outlives_time_limit, argument)


@pytest.mark.parametrize(
    ("task", "error"),
    [
        (tasks.locks_kills_its_process, WorkerLostError),
        (tasks.locks_outlives_time_limit, TimeLimitExceeded),
    ],
    ids=["lost-process", "hard-time-limit"],
)
def test_call_made_once_the_failure_is_visible_never_joins_the_dead_task(
    prefork_worker, task, error
):
    argument, first = _call(task)
    with pytest.raises(error):
        first.get(timeout=30)

    second = task.apply_async(args=(argument,), queue=QUEUE)

    assert second.id != first.id
    with pytest.raises(error):
        second.get(timeout=30)


@pytest.mark.skipif(
    CELERY_VERSION < (5, 6),
    reason="Celery runs the task's on_failure at the hard time limit from 5.6 on",
)
def test_hard_time_limit_failure_event_carries_the_calls_invocation_id(
    prefork_worker, attempt_events
):
    _, result = _call(tasks.locks_outlives_time_limit)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)

    events = attempt_events(result.invocation_id)
    assert [event["signal"] for event in events] == ["task_start", "task_failure"]
    assert events[1]["task_id"] == result.id
