"""apply_async_on_commit and delay_on_commit inside real PostgreSQL transactions."""

from __future__ import annotations

import pytest
from celery.exceptions import CeleryError
from django.db import transaction

from celery_events.task import NotTriggeredCeleryError
from celery_events.testing import capture_events
from tests import tasks
from tests.conftest import wait_for

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


@pytest.mark.worker
def test_on_commit_call_runs_on_the_worker_with_one_invocation_id(worker, worker_events):
    with capture_events() as events, transaction.atomic():
        result = tasks.add.delay_on_commit(5, 6)

    assert result.get(timeout=30) == 11
    worker_side = wait_for(
        lambda: (found := worker_events(result.invocation_id)) and len(found) == 2 and found,
        "the worker's events of the on-commit call",
    )
    assert [event["signal"] for event in worker_side] == ["task_start", "task_success"]
    assert {event.kwargs["invocation_id"] for event in events} == {result.invocation_id}
