"""DjangoTask across the process boundary: a real worker consuming from a real Redis broker."""

from __future__ import annotations

import json

import pytest
from celery.exceptions import TimeoutError
from django.conf import settings

from celery_events.task import get_django_command_task
from celery_events.testing import capture_events
from tests import tasks
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


def _signals(events):
    return [event["signal"] for event in events]


@pytest.fixture(name="finished_events")
def fixture_finished_events(worker_events):
    """Wait until the worker recorded the final event of an invocation; return its events."""

    def read(invocation_id, final=("task_success", "task_failure")):
        def finished():
            events = worker_events(invocation_id)
            return events if events and events[-1]["signal"] in final else None

        return wait_for(finished, f"the worker's final event of {invocation_id}")

    return read


def test_success_events_carry_the_callers_invocation_id(worker, finished_events):
    with capture_events() as caller_events:
        result = tasks.add.apply_async(args=(2, 3))

    assert result.get(timeout=30) == 5
    events = finished_events(result.invocation_id)
    assert _signals(events) == ["task_start", "task_success"]
    assert {event["task_id"] for event in events} == {result.task_id}
    assert {event.kwargs["invocation_id"] for event in caller_events} == {result.invocation_id}


def test_retries_keep_invocation_id_and_task_id(worker, finished_events):
    result = tasks.flaky.apply_async(args=(2,))

    assert result.get(timeout=30) == 2
    events = finished_events(result.invocation_id)
    assert _signals(events) == [
        "task_start",
        "task_retry",
        "task_start",
        "task_retry",
        "task_start",
        "task_success",
    ]
    assert [event["retries"] for event in events] == [0, 0, 1, 1, 2, 2]
    assert {event["task_id"] for event in events} == {result.task_id}


def test_manual_retry_keeps_the_invocation_and_releases_lock_after_success(worker, finished_events):
    result = tasks.manual_retry.apply_async(args=(1,))

    assert result.get(timeout=30) == 1
    events = finished_events(result.invocation_id)
    assert _signals(events) == ["task_start", "task_retry", "task_start", "task_success"]
    assert events[1]["exc"] == "FlakyError('manual')"
    assert not tasks.manual_retry.is_processing(args=(1,))


def test_final_failure_after_retries_releases_the_lock(worker, finished_events):
    result = tasks.flaky.apply_async(args=(9,))

    with pytest.raises(tasks.FlakyError):
        result.get(timeout=30)
    events = finished_events(result.invocation_id)
    assert _signals(events) == [
        "task_start",
        "task_retry",
        "task_start",
        "task_retry",
        "task_start",
        "task_failure",
    ]
    assert events[-1]["exc"] == "FlakyError('attempt 2 fails')"
    assert not tasks.flaky.is_processing(args=(9,))


def test_unique_lock_held_while_running_and_released_after_success(worker, finished_events):
    gate = "unique-success"
    first = tasks.gated_unique.apply_async(args=(gate,))
    second = tasks.gated_unique.apply_async(args=(gate,))

    assert second.task_id == first.task_id
    assert tasks.gated_unique.is_processing(args=(gate,))
    tasks.open_gate(gate)
    assert first.get(timeout=30) == gate
    finished_events(first.invocation_id)
    assert not tasks.gated_unique.is_processing(args=(gate,))
    third = tasks.gated_unique.apply_async(args=(gate,))
    assert third.task_id != first.task_id
    tasks.open_gate(gate)
    assert third.get(timeout=30) == gate


def test_unique_lock_released_after_failure(worker, finished_events):
    result = tasks.always_fails.apply_async(args=(1,))

    with pytest.raises(ValueError, match="always fails with 1"):
        result.get(timeout=30)
    assert _signals(finished_events(result.invocation_id)) == ["task_start", "task_failure"]
    assert not tasks.always_fails.is_processing(args=(1,))


def test_ignore_after_success_set_by_the_worker(worker, finished_events):
    first = tasks.ignored_after_success.apply_async(args=(41,))
    assert first.get(timeout=30) == 41
    finished_events(first.invocation_id)

    second = tasks.ignored_after_success.apply_async(args=(41,))

    assert second.state == "IGNORED"
    assert second.get() is None


def test_message_without_invocation_id_gets_one_kept_across_retries(
    worker, celery_app, worker_events, redis_client
):
    # send_task publishes by name, as a producer that is not a DjangoTask would.
    async_result = celery_app.send_task("tests.tasks.flaky", args=(1,), queue="worker")
    assert async_result.get(timeout=30) == 1

    def finished():
        events = [json.loads(raw) for raw in redis_client.lrange(tasks.EVENTS_KEY, 0, -1)]
        mine = [event for event in events if event["task_id"] == async_result.id]
        return mine if mine and mine[-1]["signal"] == "task_success" else None

    events = wait_for(finished, "the worker's events of a message without invocation id")
    assert _signals(events) == ["task_start", "task_retry", "task_start", "task_success"]
    invocation_ids = {event["invocation_id"] for event in events}
    assert len(invocation_ids) == 1
    assert None not in invocation_ids


def test_apply_async_and_get_result_returns_the_workers_result(worker):
    assert tasks.add.apply_async_and_get_result(args=(20, 22), timeout=30) == 42


def test_apply_async_and_get_result_times_out_while_task_runs(worker):
    gate = "times-out"
    with capture_events() as events, pytest.raises(TimeoutError):
        tasks.gated_unique.apply_async_and_get_result(args=(gate,), timeout=0.5)

    assert [event.name for event in events] == [
        "invocation_apply",
        "invocation_trigger",
        "invocation_timeout",
    ]
    tasks.open_gate(gate)
    wait_for(lambda: not tasks.gated_unique.is_processing(args=(gate,)), "the gate to close")


def test_command_task_runs_the_command_on_the_worker(worker, redis_client):
    task = get_django_command_task("record_call")
    result = task.apply_async(kwargs={"command_args": ["from-worker"]})

    wait_for(
        lambda: b"from-worker" in redis_client.lrange(f"{settings.KEY_PREFIX}record_call", 0, -1),
        "the command to run",
    )
    assert result.task_id is not None


def test_lock_is_free_and_ignore_window_open_once_the_result_is_visible(worker):
    ignorable = tasks.ignored_after_success.apply_async(args=(57,))
    failing = tasks.always_fails.apply_async(args=(57,))

    assert ignorable.get(timeout=30) == 57
    assert tasks.ignored_after_success.apply_async(args=(57,)).state == "IGNORED"
    with pytest.raises(ValueError, match="always fails with 57"):
        failing.get(timeout=30)
    assert not tasks.always_fails.is_processing(args=(57,))
