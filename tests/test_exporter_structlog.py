"""The structlog exporter: the exact log lines of each outcome, levels, args, bound context."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
import structlog
from celery.exceptions import TimeoutError
from django.apps import apps
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from celery_events.testing import capture_events
from tests import exporter_worker, tasks
from tests.conftest import running_worker, wait_for
from tests.matchers import DURATION_MS, ISO_DATETIME, QUEUE_WAIT_MS, Traceback


def _call(event, level, result, task, *, task_id, queue, **extra):
    return {
        "event": event,
        "log_level": level,
        "invocation_id": result.invocation_id,
        "task_id": task_id,
        "task_name": task.name,
        "queue": queue,
        **extra,
    }


def _attempt(event, level, result, task, *, retries, queue=None, **extra):
    if event == "task_started":  # a worker's attempt waited in its queue; an eager one did not
        extra["queue_wait_ms"] = None if queue is None else QUEUE_WAIT_MS
    return _call(
        event, level, result, task, task_id=result.task_id, queue=queue, retries=retries, **extra
    )


@pytest.fixture(name="exporter")
def fixture_exporter():
    """The structlog exporter, switched on by the setting for the test."""
    with override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["structlog"]):
        yield apps.get_app_config("celery_events").exporters[0]


@pytest.fixture(name="lines")
def fixture_lines(exporter):
    """The structlog lines logged while the test runs, as ``capture_logs`` sees them."""
    with structlog.testing.capture_logs() as lines:
        yield lines


class TestCaller:
    def test_triggered_call_logs_applied_at_debug_then_triggered(self, lines):
        result = tasks.caller_plain.apply_async(args=(1,))

        task = tasks.caller_plain
        assert lines == [
            _call(
                "invocation_applied",
                "debug",
                result,
                task,
                task_id=None,
                queue="caller-only",
                is_on_commit=False,
            ),
            _call(
                "invocation_triggered",
                "info",
                result,
                task,
                task_id=result.task_id,
                queue="caller-only",
                is_on_commit=False,
                eta=None,
            ),
        ]

    @pytest.mark.django_db(transaction=True)
    def test_on_commit_call_logs_triggered_at_the_commit_with_is_on_commit(self, lines):
        with transaction.atomic():
            tasks.caller_plain.apply_async_on_commit(args=(1,))
            in_transaction = [(line["event"], line["log_level"]) for line in lines]

        assert in_transaction == [("invocation_applied", "debug")]
        assert lines[1]["event"] == "invocation_triggered"
        assert lines[1]["is_on_commit"] is True

    def test_triggered_call_with_countdown_logs_its_eta(self, lines):
        before = timezone.now()
        tasks.caller_plain.apply_async(args=(1,), countdown=30)

        eta = datetime.fromisoformat(lines[1]["eta"])
        assert before + timedelta(seconds=30) <= eta <= timezone.now() + timedelta(seconds=30)

    def test_unique_call_logs_deduplicated_with_the_holders_task_id(self, lines):
        first = tasks.caller_unique.apply_async(args=(1,))
        second = tasks.caller_unique.apply_async(args=(1,))

        assert second.task_id == first.task_id
        assert lines[2:] == [
            _call(
                "invocation_applied",
                "debug",
                second,
                tasks.caller_unique,
                task_id=None,
                queue="caller-only",
                is_on_commit=False,
            ),
            _call(
                "invocation_deduplicated",
                "info",
                second,
                tasks.caller_unique,
                task_id=first.task_id,
                queue="caller-only",
            ),
        ]

    def test_ignored_call_logs_ignored_without_task_id(self, eager, lines):
        tasks.ignored_after_success.apply_async(args=(1,))
        ignored = tasks.ignored_after_success.apply_async(args=(1,))

        assert ignored.state == "IGNORED"
        assert lines[-2:] == [
            _call(
                "invocation_applied",
                "debug",
                ignored,
                tasks.ignored_after_success,
                task_id=None,
                queue="worker",
                is_on_commit=False,
            ),
            _call(
                "invocation_ignored",
                "info",
                ignored,
                tasks.ignored_after_success,
                task_id=None,
                queue="worker",
            ),
        ]

    def test_refused_publish_logs_failed_with_the_exception_after_triggered(
        self, lines, refusing_broker
    ):
        with capture_events() as events, pytest.raises(OperationalError) as refused:
            tasks.caller_plain.apply_async(args=(1,), connection=refusing_broker, retry=False)

        failure = events[-1].kwargs
        assert [line["event"] for line in lines] == [
            "invocation_applied",
            "invocation_triggered",
            "invocation_failed",
        ]
        assert lines[-1] == _call(
            "invocation_failed",
            "error",
            failure["result"],
            tasks.caller_plain,
            task_id=failure["task_id"],
            queue="caller-only",
            exc_info=refused.value,
        )

    def test_timed_out_wait_logs_timed_out_after_triggered(self, lines):
        with pytest.raises(TimeoutError):
            tasks.caller_plain.apply_async_and_get_result(args=(1,), timeout=0)

        triggered = lines[1]
        assert [line["event"] for line in lines] == [
            "invocation_applied",
            "invocation_triggered",
            "invocation_timed_out",
        ]
        assert lines[2] == {
            "event": "invocation_timed_out",
            "log_level": "info",
            "invocation_id": triggered["invocation_id"],
            "task_id": triggered["task_id"],
            "task_name": tasks.caller_plain.name,
            "queue": "caller-only",
        }


class TestAttempts:
    def test_success_logs_started_then_succeeded_with_duration(self, eager, lines):
        result = tasks.add.apply_async(args=(1, 2))

        assert lines[2:] == [
            _attempt("task_started", "info", result, tasks.add, retries=0),
            _attempt(
                "task_succeeded", "info", result, tasks.add, retries=0, duration_ms=DURATION_MS
            ),
        ]

    def test_retry_then_success_logs_each_attempt(self, eager, lines):
        result = tasks.flaky.apply_async(args=(2,))

        assert result.get() == 2
        assert lines[2:] == [
            _attempt("task_started", "info", result, tasks.flaky, retries=0),
            _attempt(
                "task_retrying",
                "warning",
                result,
                tasks.flaky,
                retries=0,
                duration_ms=DURATION_MS,
                eta=ISO_DATETIME,
                error="FlakyError('attempt 0 fails')",
            ),
            _attempt("task_started", "info", result, tasks.flaky, retries=1),
            _attempt(
                "task_retrying",
                "warning",
                result,
                tasks.flaky,
                retries=1,
                duration_ms=DURATION_MS,
                eta=ISO_DATETIME,
                error="FlakyError('attempt 1 fails')",
            ),
            _attempt("task_started", "info", result, tasks.flaky, retries=2),
            _attempt(
                "task_succeeded", "info", result, tasks.flaky, retries=2, duration_ms=DURATION_MS
            ),
        ]

    def test_retry_logs_when_the_next_attempt_is_due(self, eager, lines):
        before = timezone.now()
        tasks.flaky.apply_async(args=(1,))

        eta = datetime.fromisoformat(lines[3]["eta"])
        assert before + timedelta(seconds=0.1) <= eta <= timezone.now() + timedelta(seconds=0.1)

    def test_final_failure_logs_failed_at_error_with_the_exception(self, eager, lines):
        result = tasks.flaky.apply_async(args=(5,))

        assert result.state == "FAILURE"
        failed = lines[-1]
        exception = failed.pop("exc_info")
        assert failed == _attempt(
            "task_failed", "error", result, tasks.flaky, retries=2, duration_ms=DURATION_MS
        )
        assert isinstance(exception, tasks.FlakyError)
        assert str(exception) == "attempt 2 fails"
        assert exception.__traceback__ is not None
        assert [line["event"] for line in lines[2:-1]] == [
            "task_started",
            "task_retrying",
            "task_started",
            "task_retrying",
            "task_started",
        ]

    def test_attempt_that_raises_ignore_logs_only_its_start(self, eager, lines):
        result = tasks.raises_ignore.apply_async()

        assert lines[2:] == [
            _attempt("task_started", "info", result, tasks.raises_ignore, retries=0)
        ]


class TestOptions:
    @override_settings(
        DJANGO_CELERY_EXTENSIONS_EXPORTERS={
            "structlog": {"levels": {"task_retrying": "info", "task_succeeded": "debug"}}
        }
    )
    def test_levels_option_sets_the_level_of_the_events_it_names(self, eager):
        with structlog.testing.capture_logs() as lines:
            tasks.flaky.apply_async(args=(1,))

        assert [(line["event"], line["log_level"]) for line in lines] == [
            ("invocation_applied", "debug"),
            ("invocation_triggered", "info"),
            ("task_started", "info"),
            ("task_retrying", "info"),
            ("task_started", "info"),
            ("task_succeeded", "debug"),
        ]

    @override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS={"structlog": {"log_args": True}})
    def test_log_args_option_adds_args_and_kwargs_to_applied_triggered_and_started(self, eager):
        with structlog.testing.capture_logs() as lines:
            tasks.add.apply_async(args=(1,), kwargs={"y": 2})

        assert [
            (line["event"], line.get("args"), line.get("kwargs"))
            for line in lines
            if "args" in line or "kwargs" in line
        ] == [
            ("invocation_applied", (1,), {"y": 2}),
            ("invocation_triggered", (1,), {"y": 2}),
            ("task_started", (1,), {"y": 2}),
        ]

    def test_args_and_kwargs_are_left_out_by_default(self, eager, lines):
        tasks.add.apply_async(args=(1,), kwargs={"y": 2})

        assert len(lines) == 4
        assert not [line for line in lines if "args" in line or "kwargs" in line]


class TestContext:
    def test_task_log_lines_carry_the_invocation_id_and_task_id(self, eager, exporter):
        result = tasks.logs_with_structlog.apply_async(args=("hello",))

        assert result.get() == {"invocation_id": result.invocation_id, "task_id": result.task_id}

    def test_users_own_context_keys_are_left_as_they_were(self, eager, exporter):
        with structlog.contextvars.bound_contextvars(request_id="r-1", task_id="outer"):
            result = tasks.logs_with_structlog.apply_async(args=("hello",))

            assert result.get() == {
                "request_id": "r-1",
                "invocation_id": result.invocation_id,
                "task_id": result.task_id,
            }
            assert structlog.contextvars.get_contextvars() == {
                "request_id": "r-1",
                "task_id": "outer",
            }

    @pytest.mark.parametrize(
        ("task", "args"),
        [
            (tasks.add, (1, 2)),
            (tasks.flaky, (1,)),
            (tasks.flaky, (5,)),
            (tasks.raises_ignore, ()),
        ],
        ids=["success", "retry-then-success", "final-failure", "ignore"],
    )
    def test_every_end_of_an_attempt_resets_the_context_and_forgets_it(
        self, eager, exporter, task, args
    ):
        task.apply_async(args=args)

        assert structlog.contextvars.get_contextvars() == {}
        assert len(exporter._attempts) == 0


@pytest.mark.worker
def test_worker_logs_each_attempt_and_binds_the_ids_for_the_tasks_own_lines(
    exporters_worker, redis_client
):
    result = tasks.logs_with_structlog.apply_async(args=("hello",), queue=exporter_worker.QUEUE)

    assert result.get(timeout=30) == {
        "invocation_id": result.invocation_id,
        "task_id": result.task_id,
    }
    lines = wait_for(
        lambda: (
            (found := exporter_worker.read_log_lines(redis_client, result.task_id))
            and found[-1]["event"] == "task_succeeded"
            and found
        ),
        "the worker's task_succeeded line",
    )
    task = tasks.logs_with_structlog
    queue = exporter_worker.QUEUE
    assert lines == [
        _attempt("task_started", "info", result, task, retries=0, queue=queue),
        {
            "event": "hello",
            "log_level": "info",
            "invocation_id": result.invocation_id,
            "task_id": result.task_id,
        },
        _attempt(
            "task_succeeded",
            "info",
            result,
            task,
            retries=0,
            queue=queue,
            duration_ms=DURATION_MS,
        ),
    ]


@pytest.mark.worker
def test_worker_logs_a_failure_with_its_traceback(exporters_worker, redis_client):
    result = tasks.always_fails.apply_async(args=(7,), queue=exporter_worker.QUEUE)

    with pytest.raises(ValueError, match="always fails with 7"):
        result.get(timeout=30)
    lines = wait_for(
        lambda: (
            (found := exporter_worker.read_log_lines(redis_client, result.task_id))
            and found[-1]["event"] == "task_failed"
            and found
        ),
        "the worker's task_failed line",
    )
    failed = lines[-1]
    assert failed.pop("exception") == Traceback("ValueError: always fails with 7")
    assert failed == _attempt(
        "task_failed",
        "error",
        result,
        tasks.always_fails,
        retries=0,
        queue=exporter_worker.QUEUE,
        duration_ms=DURATION_MS,
    )


@pytest.mark.worker
def test_worker_logs_how_long_a_call_with_an_eta_waited_since_it(exporters_worker, redis_client):
    # Due half an hour ago: the worker runs it at once, and it has waited since its eta.
    due = timezone.now() - timedelta(minutes=30)
    result = tasks.add.apply_async(args=(6, 7), queue=exporter_worker.QUEUE, eta=due)

    assert result.get(timeout=30) == 13
    started = wait_for(
        lambda: next(
            (
                line
                for line in exporter_worker.read_log_lines(redis_client, result.task_id)
                if line["event"] == "task_started"
            ),
            None,
        ),
        "the worker's task_started line",
    )
    assert 1_800_000 <= started["queue_wait_ms"] < 3_600_000


@pytest.mark.worker
def test_worker_logs_the_wait_of_a_retry_from_its_own_eta(exporters_worker, redis_client):
    # Due half an hour ago, failing once: the first attempt waited since that eta, the retry
    # only since its own (a 0.1 s delay), not since the call's.
    due = timezone.now() - timedelta(minutes=30)
    result = tasks.flaky.apply_async(args=(1,), queue=exporter_worker.QUEUE, eta=due)

    assert result.get(timeout=30) == 1

    def started_lines():
        lines = exporter_worker.read_log_lines(redis_client, result.task_id)
        started = [line for line in lines if line["event"] == "task_started"]
        return started if len(started) == 2 else None

    first, retry = wait_for(started_lines, "the task_started lines of both attempts")
    assert 1_800_000 <= first["queue_wait_ms"] < 3_600_000
    assert 0 <= retry["queue_wait_ms"] < 60_000


DEFAULT_LOGGING_QUEUE = "default-logging"


@pytest.fixture(name="default_logging_worker_log", scope="module")
def fixture_default_logging_worker_log(redis_client, tmp_path_factory):
    """The output of a real worker on Celery's default logging, structlog not configured.

    Celery's logging handles the root logger and redirects the standard output to it, at
    WARNING; the structlog exporter is on.
    """
    log = tmp_path_factory.mktemp("default-logging") / "worker.log"
    with running_worker(
        log,
        DEFAULT_LOGGING_QUEUE,
        env={
            exporter_worker.EXPORTERS_ENV_VAR: json.dumps(["structlog"]),
            "CELERY_EVENTS_TEST_CELERY_LOGGING": "default",
        },
    ):
        yield log


@pytest.mark.worker
def test_worker_on_celerys_default_logging_writes_each_line_once_at_its_level(
    default_logging_worker_log,
):
    succeeded = tasks.add.apply_async(args=(1, 2), queue=DEFAULT_LOGGING_QUEUE)
    failed = tasks.triggers_on_a_refusing_broker.apply_async(queue=DEFAULT_LOGGING_QUEUE)
    assert succeeded.get(timeout=30) == 3
    with pytest.raises(OperationalError) as refused:
        failed.get(timeout=30)

    output = wait_for(
        lambda: (
            (text := default_logging_worker_log.read_text())
            and f"[{failed.task_id}] raised unexpected" in text
            and text
        ),
        "the worker's report of the failed task",
    )
    lines = output.splitlines()

    def ours(event, task_id):
        return [line for line in lines if f" {event} " in line and f"={task_id} " in line]

    assert [_level_and_text(line) for line in ours("task_started", succeeded.task_id)] == [
        ("INFO", "task_started")
    ]
    assert [_level_and_text(line) for line in ours("task_succeeded", succeeded.task_id)] == [
        ("INFO", "task_succeeded")
    ]
    (failed_line,) = ours("task_failed", failed.task_id)
    assert _level_and_text(failed_line) == ("ERROR", "task_failed")
    assert f'error="OperationalError({str(refused.value)!r})"' in failed_line
    (invocation_failed,) = [line for line in lines if " invocation_failed " in line]
    assert _level_and_text(invocation_failed) == ("ERROR", "invocation_failed")
    # One traceback: Celery's, of the task's failure, which the failed trigger caused.
    assert lines.count(f"kombu.exceptions.OperationalError: {refused.value}") == 1


def _level_and_text(line):
    """Return a Celery log line's level and the first word of its message (one timestamp)."""
    match = re.fullmatch(r"\[[0-9-]+ [0-9:,]+: (\w+)/MainProcess\] (\w+) .*", line)
    assert match is not None, line
    return match.groups()
