"""Code written for django-celery-extensions 0.0.38: its per-call options, hook options and seams.

The calls go to the "caller-only" queue of the real Redis broker (nobody consumes it) or run
eagerly; what reaches the broker is read from Celery's ``before_task_publish`` signal, which
carries the message's headers and properties as they are published.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from celery import Task, group
from celery.exceptions import CeleryError, TimeoutError
from celery.signals import before_task_publish
from django.core.cache import caches
from django.db import transaction
from django.utils import timezone

from celery_events.config import settings as ce_settings
from celery_events.task import DjangoTask
from celery_events.testing import capture_events
from tests import tasks
from tests.conftest import wait_for

#: Options of the old API that are the library's own: none may reach the broker.
LIBRARY_OPTIONS = ("invocation_id", "ignore_task_after_success", "stale_time_limit", "using")

APPLY_KEYS = {"queue", "is_async", "invocation_id", "apply_time", "is_on_commit", "using"}
TRIGGER_KEYS = APPLY_KEYS | {
    "task_id",
    "trigger_time",
    "time_limit",
    "soft_time_limit",
    "eta",
    "countdown",
    "expires",
    "stale_time_limit",
}


@pytest.fixture(name="published")
def fixture_published():
    """The messages published while the test runs: ``{"headers": ..., "properties": ...}``."""
    messages = []

    def record(headers, properties, **_):
        messages.append({"headers": dict(headers), "properties": dict(properties)})

    before_task_publish.connect(record, weak=False)
    yield messages
    before_task_publish.disconnect(record)


@pytest.fixture(name="define_task")
def fixture_define_task(celery_app):
    """Define a task of a name of its own with the given options (none routed to a worker)."""

    def define(**options):
        @celery_app.task(name=f"tests.old_api_{uuid.uuid4().hex}", **options)
        def old_api_task(x=None):
            return x

        return old_api_task

    return define


def _settled(task, **options):
    """Wait until the solo worker has settled every task it ran before now.

    Celery stores a result before it runs ``on_success``, where the window opens; the solo
    worker settles a task before it takes the next, so once a later call's window is open, the
    earlier calls are settled. ``options`` are the marker call's (for a task that opens its
    window only when the call asks).
    """
    marker = f"settled-{uuid.uuid4().hex[:8]}"
    task.apply_async(args=(marker,), **options).get(timeout=30)
    wait_for(lambda: _window_is_open(task, marker), "the worker to settle the marker call")


def _window_is_open(task, *args):
    key = task.unique_key_generator(ce_settings.IGNORE_TASK_KEY_PREFIX, args, {})
    return caches["default"].get(key) is not None


class TestPerCallOptions:
    def test_old_options_never_reach_the_broker(self, published):
        tasks.caller_plain.apply_async(
            args=(1,),
            invocation_id="caller-id",
            ignore_task_after_success=False,
            stale_time_limit=30,
            using="default",
        )

        (message,) = published
        for name in LIBRARY_OPTIONS:
            assert name not in message["properties"]
        assert message["headers"]["invocation_id"] == "caller-id"

    def test_celery_options_reach_the_message_and_the_hook(self, published):
        expires = timezone.now() + timedelta(hours=1)
        with capture_events() as events:
            tasks.caller_plain.apply_async(
                args=(1,), time_limit=20, soft_time_limit=10, expires=expires, countdown=60
            )

        (message,) = published
        assert list(message["headers"]["timelimit"]) == [20, 10]
        options = events[1].kwargs["options"]
        assert (options["time_limit"], options["soft_time_limit"]) == (20, 10)
        assert options["expires"] == expires
        assert options["eta"] == options["trigger_time"] + timedelta(seconds=60)
        assert message["headers"]["eta"] == options["eta"].isoformat()
        assert message["headers"]["expires"] == expires.isoformat()

    def test_eta_is_the_calls_eta(self, published):
        eta = timezone.now() + timedelta(minutes=5)
        with capture_events() as events:
            tasks.caller_plain.apply_async(args=(1,), eta=eta)

        assert events[1].kwargs["options"]["eta"] == eta
        assert published[0]["headers"]["eta"] == eta.isoformat()

    def test_expires_in_seconds_is_a_time_in_the_hook(self):
        with capture_events() as events:
            tasks.caller_plain.apply_async(args=(1,), expires=90)

        options = events[1].kwargs["options"]
        assert options["expires"] == options["trigger_time"] + timedelta(seconds=90)

    def test_stale_time_limit_of_a_plain_task_is_in_the_hook_only(self, published):
        with capture_events() as events:
            tasks.caller_plain.apply_async(args=(1,), stale_time_limit=timedelta(minutes=2))

        assert events[1].kwargs["options"]["stale_time_limit"] == 120
        assert "stale_time_limit" not in published[0]["headers"]

    def test_stale_time_limit_as_timedelta_is_the_lock_ttl(self, redis_client):
        tasks.caller_unique_without_stale_time_limit.apply_async(
            args=(1,), stale_time_limit=timedelta(seconds=40)
        )

        key = tasks.caller_unique_without_stale_time_limit.unique_key_generator(
            ce_settings.UNIQUE_TASK_KEY_PREFIX, (1,), {}
        )
        assert 30 < redis_client.ttl(caches["default"].make_and_validate_key(key)) <= 40

    def test_using_of_a_call_that_is_not_on_commit_is_in_the_hook(self):
        with capture_events() as events:
            tasks.caller_plain.apply_async(args=(1,), using="default")

        assert events[0].kwargs["options"]["using"] == "default"


class TestIgnoreTaskAfterSuccessPerCall:
    def test_false_runs_a_call_inside_the_open_window(self, eager):
        tasks.ignored_after_success.apply_async(args=(1,))

        result = tasks.ignored_after_success.apply_async(args=(1,), ignore_task_after_success=False)

        assert result.state == "SUCCESS"
        assert tasks.ignored_after_success.apply_async(args=(1,)).state == "IGNORED"

    def test_false_success_still_opens_the_tasks_window(self, eager):
        # False only spares the call the check, as in django-celery-extensions.
        tasks.ignored_after_success.apply_async(args=(2,), ignore_task_after_success=False)

        assert _window_is_open(tasks.ignored_after_success, 2)
        assert tasks.ignored_after_success.apply_async(args=(2,)).state == "IGNORED"

    def test_false_works_for_apply(self):
        tasks.ignored_after_success.apply(args=(3,))

        assert tasks.ignored_after_success.apply(args=(3,)).state == "IGNORED"
        assert (
            tasks.ignored_after_success.apply(args=(3,), ignore_task_after_success=False).state
            == "SUCCESS"
        )

    def test_true_ignores_after_success_of_a_task_that_does_not(self, eager, define_task):
        task = define_task(ignore_task_timedelta=60)

        task.apply_async(args=(4,))
        assert not _window_is_open(task, 4)
        task.apply_async(args=(4,), ignore_task_after_success=True)

        assert _window_is_open(task, 4)
        assert task.apply_async(args=(4,)).state == "IGNORED"

    def test_true_travels_to_the_worker_in_a_header(self, published, define_task):
        task = define_task(ignore_task_timedelta=60)

        task.apply_async(args=(5,), queue="caller-only", ignore_task_after_success=True)

        assert published[0]["headers"]["ignore_task_after_success"] is True
        assert "ignore_key" in published[0]["headers"]

    def test_true_of_a_task_without_ignore_task_timedelta_is_refused(self):
        with pytest.raises(CeleryError, match=r"ignore_task_after_success=True.*caller_plain"):
            tasks.caller_plain.apply_async(args=(1,), ignore_task_after_success=True)

    def test_value_that_is_not_a_bool_is_refused(self):
        with pytest.raises(TypeError, match=r"ignore_task_after_success .* not 'no'"):
            tasks.ignored_after_success.apply_async(args=(1,), ignore_task_after_success="no")

    def test_false_on_a_real_worker_runs_in_the_window_and_its_success_opens_it(self, worker):
        argument = uuid.uuid4().int % 10**9

        tasks.ignored_after_success.apply_async(
            args=(argument,), ignore_task_after_success=False
        ).get(timeout=30)
        _settled(tasks.ignored_after_success)
        opened = _window_is_open(tasks.ignored_after_success, argument)
        rerun = tasks.ignored_after_success.apply_async(
            args=(argument,), ignore_task_after_success=False
        )

        assert opened
        assert rerun.get(timeout=30) == argument
        assert tasks.ignored_after_success.apply_async(args=(argument,)).state == "IGNORED"

    def test_true_is_carried_across_a_retry(self, worker):
        argument = f"retried-{uuid.uuid4().hex[:8]}"

        retries = tasks.ignorable_after_a_retry.apply_async(
            args=(argument,), ignore_task_after_success=True
        ).get(timeout=30)

        _settled(tasks.ignorable_after_a_retry, ignore_task_after_success=True)
        assert retries == 1  # the retry succeeded, and its success opened the window asked for
        assert _window_is_open(tasks.ignorable_after_a_retry, argument)

    def test_calls_choice_holds_for_a_group_member(self, worker):
        argument = uuid.uuid4().int % 10**9
        tasks.ignored_after_success.apply_async(args=(argument,)).get(timeout=30)
        _settled(tasks.ignored_after_success)

        results = group(
            tasks.ignored_after_success.s(argument).set(ignore_task_after_success=False),
            tasks.ignored_after_success.s(argument),
        ).apply_async()

        # The first runs inside the open window; the second is ignored, a stand-in's None.
        assert results.get(timeout=30) == [argument, None]

    @pytest.mark.django_db(transaction=True)  # a real commit runs the on-commit callbacks
    def test_calls_choice_holds_on_commit(self, eager):
        tasks.ignored_after_success.apply_async(args=(6,))

        with transaction.atomic():
            result = tasks.ignored_after_success.apply_async_on_commit(
                args=(6,), ignore_task_after_success=False
            )
            ignored = tasks.ignored_after_success.apply_async_on_commit(args=(6,))

        assert result.state == "SUCCESS"
        assert ignored.state == "IGNORED"

    @pytest.mark.django_db(transaction=True)
    @pytest.mark.parametrize(
        ("options", "error", "message"),
        [
            ({"ignore_task_after_success": "no"}, TypeError, r"ignore_task_after_success .* 'no'"),
            ({"stale_time_limit": -1}, ValueError, r"stale_time_limit .*-1"),
        ],
    )
    def test_bad_option_of_an_on_commit_call_is_refused_at_the_call(self, options, error, message):
        with transaction.atomic():
            with pytest.raises(error, match=message):
                tasks.ignored_after_success.apply_async_on_commit(args=(7,), **options)
            committed = tasks.caller_plain.apply_async_on_commit(args=(7,), queue="caller-only")

        assert committed.state == "PENDING"  # published at the commit: not refused, not waiting


def test_retry_takes_delays_of_its_own(eager, celery_app):
    @celery_app.task(bind=True, name=f"tests.retry_delays_{uuid.uuid4().hex}")
    def retried(self):
        if self.request.retries < 1:
            raise self.retry(exc=ValueError("once"), default_retry_delays=(timedelta(seconds=30),))

    before = timezone.now()
    with capture_events() as events:
        retried.apply_async()
    after = timezone.now()

    # Not Celery's default_retry_delay (180 s), which the task leaves as it is.
    (retry,) = (event.kwargs for event in events if event.name == "task_retry")
    assert before + timedelta(seconds=30) <= retry["eta"] <= after + timedelta(seconds=30)


class TestHookOptions:
    def test_apply_and_trigger_options_have_exactly_the_old_keys_and_the_headers(self):
        with capture_events() as events:
            tasks.caller_plain.apply_async(args=(1,))

        apply_options, trigger_options = (event.kwargs["options"] for event in events)
        assert set(apply_options) == APPLY_KEYS
        assert set(trigger_options) == TRIGGER_KEYS | {"headers"}

    @pytest.mark.django_db(transaction=True)
    def test_on_commit_options_name_the_database(self):
        with capture_events() as events, transaction.atomic():
            tasks.caller_plain.apply_async_on_commit(args=(1,), using="default")

        assert [event.name for event in events] == ["invocation_apply", "invocation_trigger"]
        for event in events:
            assert event.kwargs["options"]["is_on_commit"] is True
            assert event.kwargs["options"]["using"] == "default"

    def test_unique_options_have_the_old_keys(self):
        tasks.caller_unique.apply_async(args=(1,))
        with capture_events() as events:
            tasks.caller_unique.apply_async(args=(1,))

        assert events[1].name == "invocation_unique"
        assert set(events[1].kwargs["options"]) >= TRIGGER_KEYS

    def test_ignored_options_have_the_old_keys(self, eager):
        tasks.ignored_after_success.apply_async(args=(1,))
        with capture_events() as events:
            tasks.ignored_after_success.apply_async(args=(1,))

        assert events[1].name == "invocation_ignored"
        assert set(events[1].kwargs["options"]) >= TRIGGER_KEYS

    def test_apply_options_have_the_task_id_the_caller_gave(self):
        with capture_events() as events:
            tasks.caller_plain.apply_async(args=(1,), task_id="given-by-the-caller")

        apply_options = events[0].kwargs["options"]
        assert set(apply_options) == APPLY_KEYS | {"task_id"}
        assert apply_options["task_id"] == "given-by-the-caller"

    @pytest.mark.django_db(transaction=True)
    def test_on_commit_apply_options_have_the_task_id_the_caller_gave(self):
        with capture_events() as events, transaction.atomic():
            tasks.caller_plain.apply_async_on_commit(args=(1,), task_id="given-on-commit")
            apply_options = events[0].kwargs["options"]

        assert apply_options["task_id"] == "given-on-commit"

    def test_timeout_hook_gets_the_calls_task_id_whatever_the_publish_returned(self, define_task):
        class OwnResult:
            """What a subclass's publish may return: a result type without an id."""

            state = "PENDING"

        class OwnPublish(DjangoTask):
            def _apply_and_get_result(self, result, args, kwargs, invocation_id, **options):
                return OwnResult()

        task = define_task(base=OwnPublish)
        with capture_events() as events, pytest.raises(TimeoutError):
            task.apply_async_and_get_result(args=(1,), timeout=0)

        trigger, timeout = events[1], events[-1]
        assert timeout.name == "invocation_timeout"
        assert timeout.kwargs["task_id"] == trigger.kwargs["task_id"]

    def test_timeout_options_have_the_old_keys(self):
        with capture_events() as events, pytest.raises(TimeoutError):
            tasks.caller_plain.apply_async_and_get_result(args=(1,), timeout=0)

        assert events[-1].name == "invocation_timeout"
        assert set(events[-1].kwargs["options"]) >= TRIGGER_KEYS

    def test_failure_options_have_the_old_keys(self, refusing_broker):
        with capture_events() as events, pytest.raises(Exception):  # noqa: B017, PT011 - any broker error
            tasks.caller_plain.apply_async(args=(1,), connection=refusing_broker, retry=False)

        assert events[-1].name == "invocation_failure"
        assert set(events[-1].kwargs["options"]) >= TRIGGER_KEYS


class TestSeams:
    def test_patched_get_unique_key_is_the_lock_key(self, redis_client):
        # The seam exists to be patched: tests written for django-celery-extensions do this.
        with mock.patch.object(tasks.caller_unique, "_get_unique_key", return_value="forced"):
            first = tasks.caller_unique.apply_async(args=(1,))
            second = tasks.caller_unique.apply_async(args=(2,))
            assert tasks.caller_unique.is_processing(args=(3,))

        assert second.task_id == first.task_id
        assert redis_client.exists(caches["default"].make_and_validate_key("forced"))

    def test_patched_get_unique_key_returning_none_makes_the_call_not_unique(self):
        with mock.patch.object(tasks.caller_unique, "_get_unique_key", return_value=None):
            first = tasks.caller_unique.apply_async(args=(1,))
            second = tasks.caller_unique.apply_async(args=(1,))

        assert second.task_id != first.task_id

    def test_patched_apply_and_get_result_publishes_nothing(self, published):
        # Tests written for django-celery-extensions patch it to stop the publish.
        supplied = mock.Mock(task_id="supplied", state="SUCCESS")
        with (
            mock.patch.object(
                tasks.caller_plain, "_apply_and_get_result", return_value=supplied
            ) as patched,
            capture_events() as events,
        ):
            result = tasks.caller_plain.apply_async(args=(7,), invocation_id="seam")

        assert published == []
        assert result.async_result is supplied
        assert result.state == "SUCCESS"
        assert [event.name for event in events] == ["invocation_apply", "invocation_trigger"]
        (call,) = patched.call_args_list
        assert call.args == (result, (7,), None, "seam")
        assert call.kwargs["is_async"] is True
        assert call.kwargs["task_id"] == events[1].kwargs["task_id"]
        assert call.kwargs["headers"]["invocation_id"] == "seam"

    def test_apply_goes_through_apply_and_get_result_synchronously(self):
        with mock.patch.object(
            tasks.caller_plain, "_apply_and_get_result", return_value=mock.Mock()
        ) as patched:
            tasks.caller_plain.apply(args=(1,))

        assert patched.call_args.kwargs["is_async"] is False


class TestRefusedInput:
    @pytest.mark.parametrize("limit", [0, -5, timedelta(0), float("nan")])
    def test_stale_time_limit_of_the_call_of_0_or_less_is_refused(self, limit):
        with pytest.raises(ValueError, match=r"stale_time_limit of a call of .* more than 0"):
            tasks.caller_unique.apply_async(args=(1,), stale_time_limit=limit)

    def test_stale_time_limit_of_a_plain_call_is_checked_too(self):
        with pytest.raises(ValueError, match=r"stale_time_limit of a call of .*caller_plain"):
            tasks.caller_plain.apply_async(args=(1,), stale_time_limit=-1)

    def test_stale_time_limit_of_the_wrong_type_is_refused(self):
        with pytest.raises(TypeError, match=r"stale_time_limit .* not '60'"):
            tasks.caller_unique.apply_async(args=(1,), stale_time_limit="60")

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("stale_time_limit", 0),
            ("stale_time_limit", -5),
            ("max_queue_waiting_time", -1),
            ("ignore_task_timedelta", 0),
            ("ignore_task_timedelta", timedelta(seconds=-1)),
        ],
    )
    def test_limit_of_0_or_less_is_refused_at_definition(self, option, value):
        with pytest.raises(ValueError, match=rf"{option} of task 'Bad' must be more than 0"):
            type("Bad", (DjangoTask,), {option: value})

    def test_limit_of_the_wrong_type_is_refused_at_definition(self):
        with pytest.raises(TypeError, match=r"stale_time_limit of task 'Bad' .* not 'abc'"):
            type("Bad", (DjangoTask,), {"stale_time_limit": "abc"})

    def test_timedelta_limits_are_taken_at_definition(self, define_task, redis_client):
        task = define_task(unique=True, stale_time_limit=timedelta(seconds=50))

        task.apply_async(args=(1,), queue="caller-only")

        key = task.unique_key_generator(ce_settings.UNIQUE_TASK_KEY_PREFIX, (1,), {})
        assert 40 < redis_client.ttl(caches["default"].make_and_validate_key(key)) <= 50

    @pytest.mark.parametrize("delays", [(1, -1), "abc", 5])
    def test_bad_default_retry_delays_are_refused_at_definition(self, delays):
        with pytest.raises((TypeError, ValueError), match=r"default_retry_delays of task 'Bad'"):
            type("Bad", (DjangoTask,), {"default_retry_delays": delays})

    def test_default_retry_delays_take_timedeltas(self):
        task_class = type(
            "Delays", (DjangoTask,), {"default_retry_delays": (timedelta(minutes=1), 30)}
        )

        assert task_class.default_retry_delays == (60.0, 30.0)

    @pytest.mark.parametrize("key", [None, 42, ""])
    def test_key_generator_returning_no_string_is_refused(self, define_task, key):
        task = define_task(unique=True, stale_time_limit=60, unique_key_generator=lambda *_: key)

        with pytest.raises(TypeError, match=rf"unique_key_generator .* returned {key!r}"):
            task.apply_async(args=(1,), queue="caller-only")

    def test_ignore_key_generator_returning_no_string_is_refused(self, define_task, eager):
        task = define_task(ignore_task_timedelta=60, unique_key_generator=lambda *_: None)

        with pytest.raises(TypeError, match=r"unique_key_generator .* returned None"):
            task.apply_async(args=(1,))

    def test_kwargs_named_by_something_other_than_strings_are_refused(self):
        with pytest.raises(TypeError, match=r"keyword arguments .* strings, not 1"):
            tasks.caller_unique.apply_async(kwargs={1: "a", "b": 2})

    def test_refused_call_sends_no_event(self):
        with capture_events() as events, pytest.raises(ValueError, match="stale_time_limit"):
            tasks.caller_unique.apply_async(args=(1,), stale_time_limit=0)

        assert events == []


def test_message_of_an_old_producer_releases_its_lock_on_a_real_worker(worker):
    # What django-celery-extensions did: take the lock with the task id, then publish with
    # headers of its own and none of ours.
    argument = uuid.uuid4().hex
    task_id = str(uuid.uuid4())
    key = tasks.locks_unique.unique_key_generator(
        ce_settings.UNIQUE_TASK_KEY_PREFIX, (argument,), {}
    )
    assert caches["default"].add(key, task_id, 60)
    now = timezone.now().isoformat()
    old_headers = {"apply_time": now, "trigger_time": now, "stale_time_limit": 60}

    result = Task.apply_async(
        tasks.locks_unique, args=(argument,), task_id=task_id, headers=old_headers
    )

    assert result.get(timeout=30) == argument
    assert not tasks.locks_unique.is_processing(args=(argument,))
