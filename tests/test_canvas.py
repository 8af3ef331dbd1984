"""Unique and ignored calls inside Celery's canvas: no member, result or follower is lost.

A member that joins a running call, or is ignored, is published as a stand-in under its own task
id (see celery_events.worker). A real prefork worker of two processes runs them, so that the
member is checked while the call it joined still runs.
"""

from __future__ import annotations

import uuid

import pytest
from celery import chain, chord, group

from celery_events.config import settings
from celery_events.locks import get_lock_store
from celery_events.testing import capture_events
from tests import tasks
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture(name="running")
def fixture_running(concurrent_worker):
    """Start ``concurrent_gated(gate, 5)`` and wait until its body runs; open its gate after."""
    gate = f"canvas-{uuid.uuid4().hex}"
    holder = tasks.concurrent_gated.apply_async(args=(gate, 5))
    wait_for(lambda: tasks.has_started(gate), f"the holder of {gate} to start")
    yield gate, holder
    tasks.open_gate(gate)
    holder.get(timeout=30)


@pytest.fixture(name="ignored")
def fixture_ignored(concurrent_worker):
    """An argument of ``concurrent_ignorable`` whose ignore window is open."""
    argument = uuid.uuid4().int % 1_000_000
    assert tasks.concurrent_ignorable.apply_async(args=(argument,)).get(timeout=30) == argument
    wait_for(
        lambda: tasks.concurrent_ignorable.apply_async(args=(argument,)).state == "IGNORED",
        "the ignore window to open",
    )
    return argument


def _release_holder(gate):
    assert tasks.has_started(gate)
    tasks.open_gate(gate)


class TestJoinedMember:
    def test_group_gets_the_result_of_the_call_its_member_joined(self, running):
        gate, holder = running
        with capture_events() as events:
            result = group(
                tasks.concurrent_gated.s(gate, 5), tasks.concurrent_add.s(1, 2)
            ).apply_async()

        member_id = result.results[0].id
        assert member_id != holder.id
        (unique,) = [event for event in events if event.name == "invocation_unique"]
        assert unique.kwargs["task_id"] == holder.id
        assert unique.kwargs["result"].id == member_id
        assert unique.kwargs["invocation_id"] != holder.invocation_id
        assert result.results[1].get(timeout=30) == 3
        assert not result.results[0].ready()  # it waits for the holder, which still runs
        _release_holder(gate)
        assert result.get(timeout=30) == [5, 3]

    def test_chord_body_runs_with_the_joined_result(self, running):
        gate, _ = running
        result = chord(
            [tasks.concurrent_gated.s(gate, 5), tasks.concurrent_add.s(1, 1)],
            tasks.concurrent_collect.s(),
        ).apply_async()

        _release_holder(gate)
        assert result.get(timeout=30) == [5, 2]

    def test_chain_continues_after_a_joined_first_link(self, running):
        gate, _ = running
        result = chain(tasks.concurrent_gated.s(gate, 5), tasks.concurrent_add.s(1000))()

        _release_holder(gate)
        assert result.get(timeout=30) == 1005

    def test_link_runs_with_the_joined_result(self, running):
        gate, holder = running
        callback = tasks.concurrent_add.s(2000)
        callback_result = callback.freeze()

        member = tasks.concurrent_gated.apply_async(args=(gate, 5), link=callback)

        assert member.id != holder.id
        _release_holder(gate)
        assert member.get(timeout=30) == 5
        assert callback_result.get(timeout=30) == 2005

    def test_failure_of_the_joined_call_fails_the_member_and_runs_its_errback(
        self, concurrent_worker
    ):
        gate = f"canvas-fails-{uuid.uuid4().hex}"
        holder = tasks.concurrent_gated_fails.apply_async(args=(gate,))
        wait_for(lambda: tasks.has_started(gate), "the failing holder to start")

        member = tasks.concurrent_gated_fails.apply_async(
            args=(gate,), link_error=tasks.concurrent_record_errback.s()
        )

        assert member.id != holder.id
        _release_holder(gate)
        with pytest.raises(ValueError, match=f"{gate} fails"):
            holder.get(timeout=30)
        with pytest.raises(ValueError, match=f"{gate} fails"):
            member.get(timeout=30)
        wait_for(lambda: member.id in tasks.errbacks(), "the member's errback")

    def test_member_of_a_call_that_left_no_outcome_runs_itself(self, concurrent_worker):
        # A lock taken for a task id that never ran: its holder died, and its lock expires.
        gate = f"canvas-orphan-{uuid.uuid4().hex}"
        key = tasks.concurrent_gated.unique_key_generator(
            settings.UNIQUE_TASK_KEY_PREFIX, (gate, 5), None
        )
        get_lock_store().admit(
            task_id="vanished", unique_key=key, lock_ttl=1.5, ignore_key=None, task_name=None
        )

        result = group(tasks.concurrent_gated.s(gate, 5)).apply_async()

        wait_for(lambda: tasks.has_started(gate), "the member to run its own body")
        assert get_lock_store().holder(key) == result.results[0].id
        tasks.open_gate(gate)
        assert result.get(timeout=30) == [5]

    def test_member_that_ran_itself_retries_as_the_call_itself(self, concurrent_worker):
        argument = uuid.uuid4().hex
        key = tasks.concurrent_flaky.unique_key_generator(
            settings.UNIQUE_TASK_KEY_PREFIX, (argument,), None
        )
        get_lock_store().admit(
            task_id="vanished", unique_key=key, lock_ttl=1, ignore_key=None, task_name=None
        )

        result = group(tasks.concurrent_flaky.s(argument)).apply_async()

        assert result.get(timeout=30) == [1]
        member_id = result.results[0].id
        took_over = [line for line in tasks.worker_log() if member_id in line]
        assert len(took_over) == 1
        assert "runs the body itself" in took_over[0]
        assert get_lock_store().holder(key) is None


class TestIgnoredMember:
    def test_group_gets_none_for_an_ignored_member(self, ignored):
        with capture_events() as events:
            result = group(
                tasks.concurrent_ignorable.s(ignored), tasks.concurrent_add.s(1, 2)
            ).apply_async()

        assert result.get(timeout=30) == [None, 3]
        (ignored_event,) = [event for event in events if event.name == "invocation_ignored"]
        assert ignored_event.kwargs["task_id"] is None
        assert ignored_event.kwargs["result"].state == "IGNORED"
        assert ignored_event.kwargs["result"].id == result.results[0].id

    def test_chain_follower_runs_with_none(self, ignored):
        result = chain(tasks.concurrent_ignorable.s(ignored), tasks.concurrent_describe.s())()

        assert result.get(timeout=30) == "None"

    def test_chord_body_gets_none_for_an_ignored_member(self, ignored):
        result = chord(
            [tasks.concurrent_ignorable.s(ignored), tasks.concurrent_add.s(1, 1)],
            tasks.concurrent_collect.s(),
        ).apply_async()

        assert result.get(timeout=30) == [None, 2]

    def test_link_runs_with_none(self, ignored):
        callback = tasks.concurrent_describe.s()
        callback_result = callback.freeze()

        member = tasks.concurrent_ignorable.apply_async(args=(ignored,), link=callback)

        assert member.state == "IGNORED"
        assert member.get() is None
        assert member.id is not None
        assert callback_result.get(timeout=30) == "None"


class TestEager:
    def test_ignored_group_member_is_none(self, eager):
        argument = uuid.uuid4().int % 1_000_000
        assert tasks.concurrent_ignorable.apply(args=(argument,)).get() == argument

        result = group(tasks.concurrent_ignorable.s(argument), tasks.concurrent_add.s(1, 2)).apply()

        assert result.get() == [None, 3]

    def test_member_joined_to_a_vanished_call_waits_in_place_then_runs(self, eager):
        gate = f"canvas-eager-{uuid.uuid4().hex}"
        tasks.open_gate(gate)
        key = tasks.concurrent_gated.unique_key_generator(
            settings.UNIQUE_TASK_KEY_PREFIX, (gate, 7), None
        )
        get_lock_store().admit(
            task_id="vanished", unique_key=key, lock_ttl=1, ignore_key=None, task_name=None
        )
        with capture_events() as events:
            result = group(tasks.concurrent_gated.s(gate, 7)).apply()

        assert result.get() == [7]
        assert [event.name for event in events] == [
            "invocation_apply",
            "invocation_unique",
            "task_start",
            "task_success",
        ]
        assert get_lock_store().holder(key) is None


def test_eager_chain_follower_runs_with_none_after_an_ignored_call(eager):
    argument = uuid.uuid4().int % 1_000_000
    assert tasks.concurrent_ignorable.apply(args=(argument,)).get() == argument

    result = chain(tasks.concurrent_ignorable.s(argument), tasks.concurrent_describe.s()).apply()

    assert result.get() == "None"
