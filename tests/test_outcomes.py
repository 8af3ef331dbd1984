"""The outcome a unique call leaves beside its lock: encoded with the task's serializer, bounded."""

from __future__ import annotations

import pytest

from celery_events import outcomes
from celery_events.outcomes import CallOutcome
from tests import tasks


def test_success_comes_back_with_its_value():
    record = outcomes.encode(tasks.add, CallOutcome(succeeded=True, value={"sum": [1, 2]}))

    ended = outcomes.decode(tasks.add, record)

    assert ended == CallOutcome(succeeded=True, value={"sum": [1, 2]})
    assert ended.complete() == {"sum": [1, 2]}


def test_failure_comes_back_as_the_exception_it_raised():
    record = outcomes.encode(tasks.add, CallOutcome(succeeded=False, value=KeyError("order-1")))

    ended = outcomes.decode(tasks.add, record)

    assert ended is not None
    with pytest.raises(KeyError, match="order-1"):
        ended.complete()


def test_outcome_too_long_to_keep_is_left_to_the_result_backend():
    too_long = "x" * (outcomes.OUTCOME_LIMIT + 1)

    record = outcomes.encode(tasks.add, CallOutcome(succeeded=True, value=too_long))

    assert record == outcomes.KEPT_IN_BACKEND
    assert outcomes.decode(tasks.add, record) is None


def test_outcome_the_serializer_cannot_encode_is_left_to_the_result_backend():
    record = outcomes.encode(tasks.add, CallOutcome(succeeded=True, value=object()))

    assert record == outcomes.KEPT_IN_BACKEND


def test_outcome_is_kept_as_long_as_celery_keeps_results(celery_app):
    assert outcomes.kept_for(tasks.add) == celery_app.conf.result_expires.total_seconds()
