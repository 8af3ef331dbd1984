"""The event bus: ten signals, one invocation id per call, isolated receivers."""

from __future__ import annotations

import gc
import logging

import pytest
from billiard.exceptions import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded
from celery.exceptions import Ignore, Reject, Retry, TimeoutError

from celery_events import signals
from celery_events.testing import capture_events
from tests import tasks
from tests.conftest import wait_for

SIGNAL_NAMES = [
    "invocation_apply",
    "invocation_trigger",
    "invocation_unique",
    "invocation_ignored",
    "invocation_failure",
    "invocation_timeout",
    "task_start",
    "task_retry",
    "task_failure",
    "task_success",
]


@pytest.fixture(name="raising_receiver")
def fixture_raising_receiver():
    """A receiver of every signal that raises, connected for the test's duration."""

    def receiver(sender, **kwargs):
        msg = "receiver bug"
        raise RuntimeError(msg)

    for signal in signals.ALL_SIGNALS:
        signal.connect(receiver)
    yield receiver
    for signal in signals.ALL_SIGNALS:
        signal.disconnect(receiver)


def test_namespace_holds_the_ten_signals_in_lifecycle_order():
    assert [signal.name for signal in signals.ALL_SIGNALS] == SIGNAL_NAMES
    assert sorted(signals.namespace) == sorted(SIGNAL_NAMES)
    assert all(isinstance(signal, signals.EventSignal) for signal in signals.ALL_SIGNALS)


def test_no_receivers_are_connected_by_default():
    assert [signal.name for signal in signals.ALL_SIGNALS if signal.receivers] == []


def test_send_without_receivers_returns_nothing():
    assert signals.task_start.send(tasks.add, task_id="x") == []


def test_raising_receiver_is_logged_and_the_others_still_run(raising_receiver, caplog, eager):
    caplog.set_level(logging.ERROR, logger="celery_events")

    with capture_events() as events:
        result = tasks.add.apply_async(args=(1, 2))

    assert result.get() == 3
    assert [event.name for event in events] == [
        "invocation_apply",
        "invocation_trigger",
        "task_start",
        "task_success",
    ]
    records = [record for record in caplog.records if record.name == "celery_events"]
    assert len(records) == 4
    assert all(record.exc_info and record.exc_info[0] is RuntimeError for record in records)
    assert "receiver bug" in caplog.text
    assert "'invocation_apply'" in records[0].getMessage()


def test_raising_receiver_does_not_break_a_failing_tasks_failure(raising_receiver, eager):
    result = tasks.always_fails.apply_async(args=(2,))

    assert result.state == "FAILURE"
    with pytest.raises(ValueError, match="always fails with 2"):
        result.get()


@pytest.mark.parametrize(
    "control",
    [
        SoftTimeLimitExceeded(),
        TimeLimitExceeded(),
        Terminated(),
        Retry(),
        Ignore(),
        Reject(),
        KeyboardInterrupt(),
        SystemExit(),
    ],
    ids=lambda control: type(control).__name__,
)
def test_task_control_raised_by_a_receiver_propagates(control):
    def steering(sender, **kwargs):
        raise control

    signals.task_start.connect(steering)
    try:
        with pytest.raises(type(control)):
            signals.task_start.send(tasks.add, task_id="x")
    finally:
        signals.task_start.disconnect(steering)


def test_send_returns_results_of_receivers_that_returned(raising_receiver):
    def answer(sender, **kwargs):
        return 42

    signals.task_start.connect(answer)
    try:
        results = signals.task_start.send(tasks.add, task_id="x")
    finally:
        signals.task_start.disconnect(answer)

    assert results == [(answer, 42)]


def test_receiver_connected_to_one_task_sees_only_that_task(eager):
    seen = []

    def receiver(sender, **kwargs):
        seen.append(sender.name)

    signals.task_success.connect(receiver, sender=tasks.add)
    try:
        tasks.add.apply_async(args=(1, 1))
        tasks.caller_plain.apply_async(args=(1,))
    finally:
        signals.task_success.disconnect(receiver, sender=tasks.add)

    assert seen == [tasks.add.name]


class TestReceiversKeptBetweenSends:
    """The receivers of a sender are kept between sends; connecting or disconnecting renews them."""

    @pytest.fixture(name="signal")
    def fixture_signal(self):
        return signals.EventSignal("kept", fields=("value",))

    def test_receiver_connected_after_a_send_gets_the_next_event(self, signal):
        first, second = [], []
        signal.connect(lambda _sender, value: first.append(value), weak=False)
        signal.emit("sender", 1)
        signal.connect(lambda _sender, value: second.append(value), weak=False)
        signal.emit("sender", 2)

        assert (first, second) == ([1, 2], [2])

    def test_disconnected_receiver_gets_no_more_events(self, signal):
        seen = []

        def receiver(sender, value):
            seen.append(value)

        signal.connect(receiver, weak=False)
        signal.emit("sender", 1)
        signal.disconnect(receiver)
        signal.emit("sender", 2)

        assert seen == [1]

    def test_weak_receiver_that_went_away_is_not_called(self, signal):
        seen = []

        def receiver(sender, value):
            seen.append(value)

        signal.connect(receiver)  # weakly: gone once nothing else holds it
        signal.emit("sender", 1)
        del receiver
        gc.collect()
        signal.emit("sender", 2)

        assert seen == [1]

    def test_receivers_of_one_sender_are_not_another_senders(self, signal):
        seen = []
        one, other = object(), object()
        signal.connect(lambda _sender, value: seen.append(value), sender=one, weak=False)
        signal.emit(one, 1)
        signal.emit(other, 2)

        assert seen == [1]


def _calls_of_each_path():
    """One real call of each path; returns the results, in order."""
    tasks.ignored_after_success.apply_async(args=(99,)).get(timeout=30)
    ignored = tasks.ignored_after_success.apply_async(args=(99,))
    triggered = tasks.add.apply_async(args=(1, 1))
    unique_holder = tasks.gated_unique.apply_async(args=("every-path",))
    unique = tasks.gated_unique.apply_async(args=("every-path",))
    tasks.open_gate("every-path")  # the worker runs one task at a time: let the holder finish
    retried = tasks.flaky.apply_async(args=(1,))
    failed = tasks.always_fails.apply_async(args=(7,))
    return triggered, unique_holder, unique, ignored, retried, failed


EXPECTED_CALLER_EVENTS = {
    "triggered": ["invocation_apply", "invocation_trigger"],
    "unique": ["invocation_apply", "invocation_unique"],
    "ignored": ["invocation_apply", "invocation_ignored"],
    "timed_out": ["invocation_apply", "invocation_trigger", "invocation_timeout"],
    "retried": ["invocation_apply", "invocation_trigger"],
    "failed": ["invocation_apply", "invocation_trigger"],
}
EXPECTED_TASK_EVENTS = {
    "triggered": ["task_start", "task_success"],
    "retried": ["task_start", "task_retry", "task_start", "task_success"],
    "failed": ["task_start", "task_failure"],
}


@pytest.mark.worker
def test_every_path_sends_its_ordered_events_with_one_invocation_id(worker, worker_events):
    with capture_events() as events:
        triggered, holder, unique, ignored, retried, failed = _calls_of_each_path()
        timed_out = tasks.sleeps_forever.apply_async()
        with pytest.raises(TimeoutError):
            timed_out.get(timeout=0.2)
    tasks.open_gate("never-opened")
    calls = {
        "triggered": triggered,
        "unique": unique,
        "ignored": ignored,
        "timed_out": timed_out,
        "retried": retried,
        "failed": failed,
    }

    for path, result in calls.items():
        caller_side = [
            event for event in events if event.kwargs["invocation_id"] == result.invocation_id
        ]
        assert [event.name for event in caller_side] == EXPECTED_CALLER_EVENTS[path], path
        if path in EXPECTED_TASK_EVENTS:
            expected = EXPECTED_TASK_EVENTS[path]

            def all_recorded(result=result, expected=expected):
                found = [event["signal"] for event in worker_events(result.invocation_id)]
                return found if len(found) == len(expected) else None

            worker_side = wait_for(all_recorded, f"the worker's events of the {path} call")
            assert worker_side == expected, path
    assert unique.task_id == holder.task_id
    assert ignored.task_id is None


def test_every_path_in_eager_mode_sends_the_same_ordered_events(eager):
    with capture_events() as events:
        triggered = tasks.add.apply_async(args=(1, 1))
        first_ignorable = tasks.ignored_after_success.apply_async(args=(98,))
        ignored = tasks.ignored_after_success.apply_async(args=(98,))
        retried = tasks.flaky.apply_async(args=(1,))
        failed = tasks.always_fails.apply_async(args=(8,))
        with pytest.raises(TimeoutError):
            tasks.add.apply_async_and_get_result(args=(2, 2), timeout=0)
    timed_out_invocation_id = events[-1].kwargs["invocation_id"]

    expected = {
        triggered.invocation_id: EXPECTED_CALLER_EVENTS["triggered"]
        + EXPECTED_TASK_EVENTS["triggered"],
        first_ignorable.invocation_id: EXPECTED_CALLER_EVENTS["triggered"]
        + EXPECTED_TASK_EVENTS["triggered"],
        ignored.invocation_id: EXPECTED_CALLER_EVENTS["ignored"],
        retried.invocation_id: EXPECTED_CALLER_EVENTS["retried"] + EXPECTED_TASK_EVENTS["retried"],
        failed.invocation_id: EXPECTED_CALLER_EVENTS["failed"] + EXPECTED_TASK_EVENTS["failed"],
        timed_out_invocation_id: [
            "invocation_apply",
            "invocation_trigger",
            "task_start",
            "task_success",
            "invocation_timeout",
        ],
    }
    assert len(events) == sum(len(names) for names in expected.values())
    for invocation_id, names in expected.items():
        mine = [event.name for event in events if event.kwargs["invocation_id"] == invocation_id]
        assert mine == names
