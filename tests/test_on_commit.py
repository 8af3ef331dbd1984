"""apply_async_on_commit and delay_on_commit inside real PostgreSQL transactions."""

from __future__ import annotations

import logging

import pytest
from celery.exceptions import CeleryError
from django.db import transaction
from kombu.exceptions import EncodeError

from celery_events.locks import LockStoreUnavailableError
from celery_events.task import NotTriggeredCeleryError
from celery_events.testing import capture_events
from tests import tasks
from tests.lock_helpers import redis_cache, throwaway_redis, use_cache

pytestmark = pytest.mark.django_db(transaction=True)


def _names(events):
    return [event.name for event in events]


class RollbackError(Exception):
    """Raised to roll a test transaction back."""


def test_waits_for_commit_then_triggers():
    with capture_events() as events:
        with transaction.atomic():
            result = tasks.caller_plain.apply_async_on_commit(args=(1,))

            assert result.state == "WAITING"
            assert result.task_id is None
            assert _names(events) == ["invocation_apply"]
            assert events[0].kwargs["options"]["is_on_commit"] is True
            with pytest.raises(NotTriggeredCeleryError, match=result.invocation_id):
                result.get()

        assert _names(events) == ["invocation_apply", "invocation_trigger"]

    assert result.state == "PENDING"  # published; nobody consumes the caller-only queue
    assert result.task_id == events[1].kwargs["task_id"]


def test_rollback_triggers_nothing():
    def apply_then_roll_back():
        with transaction.atomic():
            result = tasks.caller_plain.apply_async_on_commit(args=(1,))
            raise RollbackError(result)

    with capture_events() as events, pytest.raises(RollbackError) as rolled_back:
        apply_then_roll_back()

    result = rolled_back.value.args[0]

    assert _names(events) == ["invocation_apply"]
    assert result.state == "WAITING"


def test_nested_savepoint_waits_for_the_outer_commit():
    with capture_events() as events, transaction.atomic():
        with transaction.atomic():
            tasks.caller_plain.delay_on_commit(2)
        assert _names(events) == ["invocation_apply"]

    assert _names(events) == ["invocation_apply", "invocation_trigger"]


def test_outside_a_transaction_triggers_at_once():
    with capture_events() as events:
        result = tasks.caller_plain.delay_on_commit(3)

    assert _names(events) == ["invocation_apply", "invocation_trigger"]
    assert result.task_id is not None


def test_unique_lock_taken_at_commit_not_at_apply():
    with transaction.atomic():
        tasks.caller_unique.apply_async_on_commit(args=(7,))
        assert not tasks.caller_unique.is_processing(args=(7,))

    assert tasks.caller_unique.is_processing(args=(7,))


def test_unique_without_stale_time_limit_refused_inside_the_transaction():
    with pytest.raises(CeleryError, match="stale time limit"), transaction.atomic():
        tasks.caller_unique_without_stale_time_limit.apply_async_on_commit(args=(1,))


def _commit_with_a_later_callback(apply):
    """Apply a call on commit, then register another callback; return the result and the log."""
    later = []
    with transaction.atomic():
        result = apply()
        transaction.on_commit(lambda: later.append("ran"))
    return result, later


def _logged_with_the_invocation_id(caplog, result):
    return [
        record
        for record in caplog.records
        if record.name == "celery_events" and result.invocation_id in record.getMessage()
    ]


def test_lock_store_down_at_commit_fails_the_result_not_the_commit(settings, caplog):
    with throwaway_redis() as (url, process):
        use_cache(settings, "stopped-before-commit", redis_cache(url))

        def apply_then_stop_redis():
            result = tasks.caller_unique.apply_async_on_commit(args=(8,))
            process.kill()
            process.wait()
            return result

        with capture_events() as events:
            result, later = _commit_with_a_later_callback(apply_then_stop_redis)

    assert later == ["ran"]
    assert result.state == "FAILURE"
    assert result.failed()
    with pytest.raises(LockStoreUnavailableError, match="cache 'stopped-before-commit'"):
        result.get()
    assert _names(events) == ["invocation_apply", "invocation_failure"]
    failure = events[1].kwargs
    assert failure["invocation_id"] == result.invocation_id
    assert isinstance(failure["exc"], LockStoreUnavailableError)
    assert failure["task_id"] == failure["options"]["task_id"]
    (record,) = _logged_with_the_invocation_id(caplog, result)
    assert record.levelno == logging.ERROR
    assert record.exc_info[0] is LockStoreUnavailableError


def test_arguments_that_cannot_be_encoded_fail_the_result_not_the_commit(caplog):
    with capture_events() as events:
        result, later = _commit_with_a_later_callback(
            lambda: tasks.caller_plain.apply_async_on_commit(args=(object(),))
        )

    assert later == ["ran"]
    assert result.state == "FAILURE"
    with pytest.raises(EncodeError):
        result.get()
    assert isinstance(result.get(propagate=False), EncodeError)
    assert _names(events) == ["invocation_apply", "invocation_trigger", "invocation_failure"]
    assert isinstance(events[2].kwargs["exc"], EncodeError)
    assert _logged_with_the_invocation_id(caplog, result)


def test_unique_call_whose_key_cannot_be_computed_fails_at_commit_on_the_bus():
    with capture_events() as events:
        result, later = _commit_with_a_later_callback(
            lambda: tasks.caller_unique.apply_async_on_commit(args=(object(),))
        )

    assert later == ["ran"]
    assert result.state == "FAILURE"
    assert _names(events) == ["invocation_apply", "invocation_failure"]
    assert isinstance(events[1].kwargs["exc"], EncodeError)


@pytest.mark.worker
def test_on_commit_call_runs_on_the_worker_with_one_invocation_id(worker, attempt_events):
    with capture_events() as events, transaction.atomic():
        result = tasks.add.delay_on_commit(5, 6)

    assert result.get(timeout=30) == 11
    worker_side = attempt_events(result.invocation_id)
    assert [event["signal"] for event in worker_side] == ["task_start", "task_success"]
    assert {event.kwargs["invocation_id"] for event in events} == {result.invocation_id}
