"""DjangoTask in the caller's process: eager runs and calls published to a queue nobody reads."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from celery.exceptions import CeleryError, TimeoutError
from django.core.cache import caches
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from kombu import serialization

from celery_events import signals
from celery_events.config import settings as ce_settings
from celery_events.task import (
    DjangoTask,
    IgnoredResult,
    NotTriggeredCeleryError,
    ResultWrapper,
    default_unique_key_generator,
)
from celery_events.testing import capture_events
from tests import tasks


def _names(events):
    return [event.name for event in events]


@pytest.fixture(name="unique_key")
def fixture_unique_key():
    """The cache key (with the cache's prefix) of a unique task's call."""

    def make(task, *args, **kwargs):
        key = task.unique_key_generator(ce_settings.UNIQUE_TASK_KEY_PREFIX, args, kwargs)
        return caches["default"].make_and_validate_key(key)

    return make


def test_direct_call_raises_celery_error_naming_apply():
    with pytest.raises(CeleryError, match=r"tests\.tasks\.add.*apply\(\), apply_async\(\)"):
        tasks.add(1, 2)


def test_apply_async_eager_returns_result_wrapper_with_value(eager):
    result = tasks.add.apply_async(args=(2, 3))

    assert isinstance(result, ResultWrapper)
    assert result.get() == 5
    assert result.state == "SUCCESS"
    assert result.successful()
    assert not result.failed()


def test_apply_runs_here_through_the_same_events():
    with capture_events() as events:
        result = tasks.caller_plain.apply(args=(7,))

    assert result.get() == 7
    assert _names(events) == [
        "invocation_apply",
        "invocation_trigger",
        "task_start",
        "task_success",
    ]
    assert len({event.kwargs["invocation_id"] for event in events}) == 1


class TestCallersInvocationId:
    def test_invocation_id_option_is_the_calls_invocation_id(self):
        with capture_events() as events:
            result = tasks.caller_plain.apply_async(args=(1,), invocation_id="from-the-caller")

        assert result.invocation_id == "from-the-caller"
        assert {event.kwargs["invocation_id"] for event in events} == {"from-the-caller"}
        trigger = events[1].kwargs
        assert trigger["options"]["headers"]["invocation_id"] == "from-the-caller"

    def test_invocation_id_header_is_the_calls_and_never_skips_the_checks(self):
        headers = {"invocation_id": "correlated", "x-user": "kept"}
        with capture_events() as events:
            first = tasks.caller_unique.apply_async(args=(31,), headers=headers)
            second = tasks.caller_unique.apply_async(args=(31,), headers=headers)

        assert isinstance(second, ResultWrapper)
        assert second.task_id == first.task_id
        assert _names(events) == [
            "invocation_apply",
            "invocation_trigger",
            "invocation_apply",
            "invocation_unique",
        ]
        assert {event.kwargs["invocation_id"] for event in events} == {"correlated"}
        assert events[1].kwargs["options"]["headers"]["x-user"] == "kept"

    @pytest.mark.parametrize("invocation_id", ["", 42, None.__class__])
    def test_invocation_id_that_is_not_a_non_empty_string_is_refused(self, invocation_id):
        with pytest.raises(CeleryError, match="invocation_id must be a non-empty string, not"):
            tasks.caller_plain.apply_async(args=(1,), invocation_id=invocation_id)

    def test_option_and_header_naming_two_invocations_are_refused(self):
        with pytest.raises(CeleryError, match=r"'one'.*'other'.*name two invocations"):
            tasks.caller_plain.apply_async(
                args=(1,), invocation_id="one", headers={"invocation_id": "other"}
            )

    def test_callers_headers_of_the_librarys_names_are_replaced(self):
        forged = {
            "unique_key": "forged",
            "stand_in": {"ignored": True},
            "ignore_key": "forged",
            "trigger_time": "forged",
        }
        with capture_events() as events:
            tasks.caller_plain.apply_async(args=(1,), headers=forged)

        headers = events[1].kwargs["options"]["headers"]
        assert set(headers) == {"trigger_time"}
        assert headers["trigger_time"] == events[1].kwargs["options"]["trigger_time"].timestamp()


def test_call_whose_invocation_id_is_its_task_id_publishes_no_invocation_header(celery_app):
    with capture_events() as events:
        result = tasks.caller_plain.apply_async(args=(1,))

    assert _names(events) == ["invocation_apply", "invocation_trigger"]
    trigger = events[1].kwargs
    assert trigger["task_id"] == result.task_id == result.invocation_id
    assert "invocation_id" not in trigger["options"]["headers"]
    assert trigger["options"]["queue"] == "caller-only"


def test_countdown_becomes_eta_in_hook_options():
    before = timezone.now()
    with capture_events() as events:
        tasks.caller_plain.apply_async(args=(1,), countdown=30)
    after = timezone.now()

    options = events[1].kwargs["options"]
    assert options["countdown"] is None
    assert before + timedelta(seconds=30) <= options["eta"] <= after + timedelta(seconds=30)


def test_apply_async_and_get_result_timeout_zero_raises_at_once_and_sends_timeout():
    with capture_events() as events, pytest.raises(TimeoutError):
        tasks.caller_plain.apply_async_and_get_result(args=(1,), timeout=0)

    assert _names(events) == ["invocation_apply", "invocation_trigger", "invocation_timeout"]
    timeout = events[2].kwargs
    assert timeout["task_id"] == events[1].kwargs["task_id"]
    assert isinstance(timeout["ex"], TimeoutError)


def test_apply_async_and_get_result_no_result_in_time_raises_timeout_error(celery_app):
    # Nobody consumes the caller-only queue, so no result ever comes.
    with capture_events() as events, pytest.raises(TimeoutError):
        tasks.caller_plain.apply_async_and_get_result(args=(1,), timeout=0.2)

    assert _names(events)[-1] == "invocation_timeout"


def test_apply_async_and_get_result_eager_returns_value(eager):
    assert tasks.add.apply_async_and_get_result(args=(4, 4), timeout=5) == 8


class TestDefaultRetryDelays:
    def test_retry_waits_the_delay_of_its_attempt(self, eager):
        before = timezone.now()
        with capture_events() as events:
            result = tasks.flaky.apply_async(args=(2,))
        after = timezone.now()

        assert result.get() == 2
        retries = [event.kwargs for event in events if event.name == "task_retry"]
        assert len(retries) == 2
        for attempt, (retry, delay) in enumerate(zip(retries, (0.1, 0.2), strict=True)):
            assert str(retry["exc"]) == f"attempt {attempt} fails"
            assert before + timedelta(seconds=delay) <= retry["eta"]
            assert retry["eta"] <= after + timedelta(seconds=delay)

    def test_retries_as_many_times_as_delays_then_fails(self, eager):
        with capture_events() as events:
            result = tasks.flaky.apply_async(args=(5,))

        assert result.state == "FAILURE"
        assert _names(events).count("task_start") == 3  # the first attempt and two retries
        assert _names(events).count("task_retry") == 2
        assert _names(events)[-1] == "task_failure"


class TestUnique:
    def test_second_call_returns_holder_task_id(self, unique_key, redis_client):
        first = tasks.caller_unique.apply_async(args=(1,))
        with capture_events() as events:
            second = tasks.caller_unique.apply_async(args=(1,))

        assert second.task_id == first.task_id
        assert _names(events) == ["invocation_apply", "invocation_unique"]
        assert events[1].kwargs["task_id"] == first.task_id
        assert redis_client.get(unique_key(tasks.caller_unique, 1)) is not None

    def test_other_arguments_are_not_deduplicated(self):
        first = tasks.caller_unique.apply_async(args=(1,))
        second = tasks.caller_unique.apply_async(args=(2,))

        assert second.task_id != first.task_id

    def test_kwargs_order_gives_the_same_lock(self):
        first = tasks.caller_unique.apply_async(kwargs={"x": 1})
        second = tasks.caller_unique.apply_async(kwargs={"x": 1})

        assert second.task_id == first.task_id

    def test_without_stale_time_limit_refused_at_apply(self):
        with (
            capture_events() as events,
            pytest.raises(CeleryError, match=r"caller_unique_without_stale_time_limit.*stale"),
        ):
            tasks.caller_unique_without_stale_time_limit.apply_async(args=(1,))

        assert events == []

    def test_stale_time_limit_from_the_call_is_the_lock_ttl(self, unique_key, redis_client):
        with capture_events() as events:
            tasks.caller_unique_without_stale_time_limit.apply_async(args=(1,), stale_time_limit=30)

        assert events[1].kwargs["options"]["stale_time_limit"] == 30
        ttl = redis_client.ttl(unique_key(tasks.caller_unique_without_stale_time_limit, 1))
        assert 0 < ttl <= 30

    @override_settings(DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT=45)
    def test_stale_time_limit_from_settings(self):
        with capture_events() as events:
            tasks.caller_unique_without_stale_time_limit.apply_async(args=(1,))

        assert events[1].kwargs["options"]["stale_time_limit"] == 45

    @override_settings(DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_MAX_QUEUE_WAITING_TIME=20)
    def test_stale_time_limit_derived_from_time_limit_and_queue_waiting_time(self):
        with capture_events() as events:
            tasks.caller_unique_without_stale_time_limit.apply_async(args=(1,), time_limit=10)

        options = events[1].kwargs["options"]
        assert options["stale_time_limit"] == 30
        # The message expires when its lock would go stale before it could finish.
        assert options["expires"] == options["trigger_time"] + timedelta(seconds=20)

    def test_lock_ttl_covers_the_countdown(self, unique_key, redis_client):
        tasks.caller_unique.apply_async(args=(1,), countdown=100)

        ttl = redis_client.ttl(unique_key(tasks.caller_unique, 1))
        assert 100 < ttl <= 160

    def test_is_processing_true_while_held(self):
        assert not tasks.caller_unique.is_processing(args=(3,))
        tasks.caller_unique.apply_async(args=(3,))
        assert tasks.caller_unique.is_processing(args=(3,))
        assert not tasks.caller_unique.is_processing(args=(4,))

    def test_is_processing_of_a_task_that_is_not_unique_raises(self):
        with pytest.raises(CeleryError, match=r"tests\.tasks\.caller_plain.*not unique"):
            tasks.caller_plain.is_processing(args=(1,))

    def test_eager_call_releases_its_lock_after_success(self, eager):
        result = tasks.caller_unique.apply_async(args=(5,))

        assert result.get() == 5
        assert not tasks.caller_unique.is_processing(args=(5,))

    def test_synchronous_apply_does_not_release_an_async_holder(self):
        holder = tasks.caller_unique.apply_async(args=(6,))
        joined = tasks.caller_unique.apply(args=(6,))

        assert joined.task_id == holder.task_id
        assert tasks.caller_unique.is_processing(args=(6,))

    def test_custom_unique_key_generator_names_the_lock(self, celery_app, redis_client):
        def one_lock_per_task(task, prefix, task_args, task_kwargs):
            return f"{prefix}:{task.name}:one"

        @celery_app.task(
            name=f"tests.custom_key_{uuid.uuid4().hex}",
            unique=True,
            stale_time_limit=60,
            unique_key_generator=one_lock_per_task,
        )
        def custom_key(x):
            return x

        first = custom_key.apply_async(args=(1,), queue="caller-only")
        second = custom_key.apply_async(args=(2,), queue="caller-only")

        assert second.task_id == first.task_id
        key = caches["default"].make_and_validate_key(
            f"{ce_settings.UNIQUE_TASK_KEY_PREFIX}:{custom_key.name}:one"
        )
        assert redis_client.exists(key)


class TestDefaultUniqueKeyGenerator:
    def test_matches_django_celery_extensions_keys(self, celery_app):
        # The formula of django-celery-extensions, so old and new processes share locks.
        _, _, data = serialization.dumps(([1, "a"], {"b": 2, "c": 3}), "json")
        expected = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"prefix:{tasks.add.name}:{data}"))

        key = default_unique_key_generator(tasks.add, "prefix", (1, "a"), {"b": 2, "c": 3})

        assert key == expected

    def test_task_with_a_serializer_of_its_own_keys_with_the_apps(self, celery_app):
        @celery_app.task(name=f"tests.own_serializer_{uuid.uuid4().hex}", serializer="pickle")
        def own_serializer(x):
            return x

        _, _, data = serialization.dumps(([1], {}), celery_app.conf.task_serializer)
        expected = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"p:{own_serializer.name}:{data}"))

        assert default_unique_key_generator(own_serializer, "p", (1,), None) == expected

    def test_kwargs_order_does_not_change_the_key(self):
        first = default_unique_key_generator(tasks.add, "p", (), {"b": 1, "a": 2})
        second = default_unique_key_generator(tasks.add, "p", (), {"a": 2, "b": 1})

        assert first == second

    def test_args_tuple_and_list_give_the_same_key(self):
        first = default_unique_key_generator(tasks.add, "p", (1, 2), None)
        second = default_unique_key_generator(tasks.add, "p", [1, 2], {})

        assert first == second


class TestIgnore:
    def test_call_after_success_is_ignored(self, eager):
        first = tasks.ignored_after_success.apply_async(args=(1,))
        with capture_events() as events:
            second = tasks.ignored_after_success.apply_async(args=(1,))

        assert first.state == "SUCCESS"
        assert second.state == "IGNORED"
        assert isinstance(second.async_result, IgnoredResult)
        assert second.get() is None
        assert not second.successful()
        assert not second.failed()
        assert second.task_id is None
        assert _names(events) == ["invocation_apply", "invocation_ignored"]
        assert events[1].kwargs["task_id"] is None

    def test_other_arguments_are_not_ignored(self, eager):
        tasks.ignored_after_success.apply_async(args=(1,))

        assert tasks.ignored_after_success.apply_async(args=(2,)).state == "SUCCESS"

    def test_ignore_window_lasts_ignore_task_timedelta(self, eager, redis_client):
        tasks.ignored_after_success.apply_async(args=(1,))

        key = tasks.ignored_after_success.unique_key_generator(
            ce_settings.IGNORE_TASK_KEY_PREFIX, (1,), {}
        )
        ttl = redis_client.ttl(caches["default"].make_and_validate_key(key))
        assert 0 < ttl <= 60

    def test_failure_does_not_open_the_ignore_window(self, eager, celery_app):
        @celery_app.task(
            name=f"tests.fails_then_ignores_{uuid.uuid4().hex}",
            ignore_task_after_success=True,
            ignore_task_timedelta=60,
        )
        def fails(x):
            raise ValueError(x)

        assert fails.apply_async(args=(1,)).state == "FAILURE"
        assert fails.apply_async(args=(1,)).state == "FAILURE"

    def test_set_ignore_task_ignores_later_calls(self, eager):
        assert tasks.ignore_by_hand.apply_async(args=(True,)).get() is True

        assert tasks.ignore_by_hand.apply_async(args=(True,)).state == "IGNORED"

    def test_without_set_ignore_task_nothing_is_ignored(self, eager):
        tasks.ignore_by_hand.apply_async(args=(False,))

        assert tasks.ignore_by_hand.apply_async(args=(False,)).state == "SUCCESS"

    def test_set_ignore_task_takes_its_own_timedelta(self, eager, celery_app, redis_client):
        @celery_app.task(bind=True, name=f"tests.ignore_for_{uuid.uuid4().hex}")
        def ignore_for(self, seconds):
            self.set_ignore_task(ignore_task_timedelta=timedelta(seconds=seconds))

        ignore_for.apply_async(args=(300,))

        key = ignore_for.unique_key_generator(ce_settings.IGNORE_TASK_KEY_PREFIX, (300,), {})
        ttl = redis_client.ttl(caches["default"].make_and_validate_key(key))
        assert 60 < ttl <= 300

    def test_set_ignore_task_without_timedelta_raises(self, eager, celery_app):
        @celery_app.task(bind=True, name=f"tests.ignore_without_{uuid.uuid4().hex}")
        def ignore_without(self):
            self.set_ignore_task()

        result = ignore_without.apply_async()

        assert result.state == "FAILURE"
        with pytest.raises(CeleryError, match="needs an ignore_task_timedelta"):
            result.get()

    def test_ignore_task_after_success_without_timedelta_refused_at_definition(self):
        with pytest.raises(CeleryError, match=r"'BadIgnore' sets .* but no ignore_task_timedelta"):
            type("BadIgnore", (DjangoTask,), {"ignore_task_after_success": True})


class TestHooksAndSignals:
    def test_overridden_hooks_run_and_signals_still_sent(self, eager):
        tasks.HookRecordingTask.hook_calls.clear()
        with capture_events() as events:
            tasks.caller_hook_recording.apply_async(args=(1,))

        assert tasks.HookRecordingTask.hook_calls == [
            "invocation_apply",
            "invocation_trigger",
            "task_start",
            "task_success",
        ]
        assert _names(events) == tasks.HookRecordingTask.hook_calls

    def test_hook_runs_before_its_signal(self, eager):
        order = []
        tasks.HookRecordingTask.hook_calls.clear()

        def receiver(sender, **kwargs):
            order.append(list(tasks.HookRecordingTask.hook_calls))

        signals.invocation_apply.connect(receiver)
        try:
            tasks.caller_hook_recording.apply_async(args=(1,))
        finally:
            signals.invocation_apply.disconnect(receiver)

        assert order == [["invocation_apply"]]

    def test_failure_event_carries_exception_and_einfo(self, eager, celery_app):
        with capture_events() as events:
            tasks.always_fails.apply_async(args=(3,))

        failure = events[-1]
        assert failure.name == "task_failure"
        assert isinstance(failure.kwargs["exc"], ValueError)
        assert "always fails with 3" in failure.kwargs["einfo"].traceback


def test_result_wrapper_repr_names_invocation_state_and_id(eager):
    result = tasks.add.apply_async(args=(1, 1))

    assert repr(result) == (
        f"<ResultWrapper {result.invocation_id} state=SUCCESS id={result.task_id}>"
    )


def test_result_wrapper_answers_celery_result_api_from_the_underlying_result(eager):
    result = tasks.add.apply_async(args=(2, 2))

    assert result.result == 4
    assert result.ready()
    assert result.info == 4


@pytest.mark.django_db(transaction=True)
def test_result_wrapper_before_trigger_refuses_result_api():
    with transaction.atomic():
        result = tasks.caller_plain.apply_async_on_commit(args=(1,))
        with pytest.raises(NotTriggeredCeleryError):
            result.ready()
        transaction.set_rollback(True)
