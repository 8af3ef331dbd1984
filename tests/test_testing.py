"""capture_events(), for users' own tests."""

from __future__ import annotations

from celery_events import signals
from celery_events.testing import CapturedEvent, capture_events
from tests import tasks


def test_captures_name_sender_and_kwargs_in_order(eager):
    with capture_events() as events:
        result = tasks.add.apply_async(args=(1, 2))

    assert [event.name for event in events] == [
        "invocation_apply",
        "invocation_trigger",
        "task_start",
        "task_success",
    ]
    assert all(isinstance(event, CapturedEvent) for event in events)
    assert {event.sender.name for event in events} == {tasks.add.name}
    assert events[-1].kwargs["retval"] == 3
    assert events[-1].kwargs["task_id"] == result.task_id


def test_disconnects_when_the_block_ends(eager):
    with capture_events() as events:
        pass
    tasks.add.apply_async(args=(1, 2))

    assert events == []
    assert not any(signal.receivers for signal in signals.ALL_SIGNALS)
