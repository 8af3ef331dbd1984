"""The OpenTelemetry exporter: the exact spans of each outcome, in eager mode and across workers.

Spans of the tests' process come from the SDK's in-memory exporter (tests/telemetry.py); spans of
a worker from Redis, where the exporters worker sends them (tests/exporter_worker.py). Both are
compared as the SDK's JSON.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from celery import Task
from celery.exceptions import TimeoutError
from celery.signals import before_task_publish
from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from kombu.exceptions import OperationalError
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

from celery_events.exporters.opentelemetry import format_span_tree
from celery_events.locks import LockStoreUnavailableError
from celery_events.testing import capture_events
from tests import exporter_worker, tasks
from tests.conftest import AMQP_URL, running_worker, wait_for
from tests.lock_helpers import redis_cache, throwaway_redis, use_cache
from tests.matchers import ISO_DATETIME, QUEUE_WAIT_SECONDS, Traceback
from tests.telemetry import fixture_read_metrics, fixture_spans  # noqa: F401 - fixtures

# A queue of this session's own: test sessions running at once share the RabbitMQ.
AMQP_QUEUE = f"exporters-{settings.KEY_PREFIX.rstrip(':')}"


# Expected spans, as the SDK's JSON shows them.

_BROKER_URL = urlsplit(settings.CELERY_BROKER_URL)
BROKER = {"server.address": _BROKER_URL.hostname, "server.port": _BROKER_URL.port}
"""The broker of the tests' Celery app, as a call that publishes reports it."""


def _producer(task, result, *, outcome, queue, task_id=None, operation="apply_async", **extra):
    attributes = {
        "messaging.system": "celery",
        "messaging.operation.type": "send",
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
        "messaging.message.conversation_id": result.invocation_id,
        "celery_events.task.name": task.name,
        "celery_events.invocation.on_commit": False,
        **extra,
        "celery_events.invocation.outcome": outcome,
    }
    if outcome == "triggered" or "error.type" in extra:  # it reached the publish
        attributes.update(BROKER)
    if task_id is not None:
        attributes["messaging.message.id"] = task_id
    return {
        "name": f"{operation} {task.name}",
        "kind": "SpanKind.PRODUCER",
        "attributes": attributes,
        "events": [],
        "status": {"status_code": "UNSET"},
    }


def _consumer(task, result, *, retries, state, queue=None, events=(), error=None):
    attributes = {
        "messaging.system": "celery",
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.message.id": result.task_id,
        "messaging.message.conversation_id": result.invocation_id,
        "celery_events.task.name": task.name,
        "celery_events.task.retries": retries,
    }
    if queue is not None:  # a worker's attempt, which waited in that queue
        attributes["messaging.destination.name"] = queue
        attributes["celery_events.task.queue_wait"] = QUEUE_WAIT_SECONDS
    status = {"status_code": "UNSET"}
    if error is not None:
        error_type, message = error
        attributes["error.type"] = error_type
        events = [*events, _exception_event(error_type, message)]
        status = {"status_code": "ERROR", "description": f"{error_type}: {message}"}
    attributes["celery_events.task.state"] = state
    return {
        "name": f"run {task.name}",
        "kind": "SpanKind.CONSUMER",
        "attributes": attributes,
        "events": list(events),
        "status": status,
    }


def _exception_event(error_type, message, stacktrace=None):
    return (
        "exception",
        {
            "exception.type": error_type,
            "exception.message": message,
            "exception.stacktrace": stacktrace or Traceback(f"{error_type}: {message}"),
            "exception.escaped": "False",
        },
    )


def _retry_event(message):
    return (
        "retry",
        {
            "celery_events.retry.eta": ISO_DATETIME,
            "exception.type": "tests.tasks.FlakyError",
            "exception.message": message,
        },
    )


def _summary(span):
    """The parts of a span (the SDK's JSON) that the tests expect exactly."""
    return {
        "name": span["name"],
        "kind": span["kind"],
        "attributes": span["attributes"],
        "events": [(event["name"], event["attributes"]) for event in span["events"]],
        "status": span["status"],
    }


def _finished(spans):
    return [json.loads(span.to_json(indent=None)) for span in spans.get_finished_spans()]


def _assert_child(child, parent):
    assert child["context"]["trace_id"] == parent["context"]["trace_id"]
    assert child["parent_id"] == parent["context"]["span_id"]


@pytest.fixture(name="exporter")
def fixture_exporter():
    """The OpenTelemetry exporter, switched on by the setting for the test."""
    with override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["opentelemetry"]):
        yield apps.get_app_config("celery_events").exporters[0]


@pytest.fixture(name="lock_store_down")
def fixture_lock_store_down(settings):
    """Locks in a Redis that was stopped: a unique call fails before its publish."""
    with throwaway_redis() as (url, process):
        use_cache(settings, "stopped", redis_cache(url))
        process.kill()
        process.wait()
        yield


class TestCaller:
    def test_triggered_call_is_a_producer_span_that_ends_when_it_triggers(self, exporter, spans):
        result = tasks.caller_plain.apply_async(args=(1,))

        (producer,) = _finished(spans)
        assert _summary(producer) == _producer(
            tasks.caller_plain,
            result,
            outcome="triggered",
            queue="caller-only",
            task_id=result.task_id,
        )

    def test_trigger_injects_the_producer_span_into_the_message_headers(self, exporter, spans):
        with capture_events() as events:
            tasks.caller_plain.apply_async(args=(1,))

        (producer,) = spans.get_finished_spans()
        context = producer.get_span_context()
        headers = events[1].kwargs["options"]["headers"]
        assert headers["traceparent"] == (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        )

    def test_producer_span_is_a_child_of_the_callers_current_span(self, exporter, spans):
        with trace.get_tracer("tests").start_as_current_span("request") as request_span:
            tasks.caller_plain.apply_async(args=(1,))

        producer, request = spans.get_finished_spans()
        assert request.context == request_span.get_span_context()
        assert producer.parent == request.context

    def test_unique_call_is_a_producer_span_with_the_holders_task_id(self, exporter, spans):
        first = tasks.caller_unique.apply_async(args=(1,))
        second = tasks.caller_unique.apply_async(args=(1,))

        assert [_summary(span) for span in _finished(spans)] == [
            _producer(
                tasks.caller_unique,
                first,
                outcome="triggered",
                queue="caller-only",
                task_id=first.task_id,
            ),
            _producer(
                tasks.caller_unique,
                second,
                outcome="unique",
                queue="caller-only",
                task_id=first.task_id,
            ),
        ]

    def test_ignored_call_is_a_producer_span_without_message_id(self, exporter, eager, spans):
        tasks.ignored_after_success.apply_async(args=(1,))
        ignored = tasks.ignored_after_success.apply_async(args=(1,))

        assert _summary(_finished(spans)[-1]) == _producer(
            tasks.ignored_after_success, ignored, outcome="ignored", queue="worker"
        )

    def test_timed_out_wait_is_an_error_span_under_the_producer_span(self, exporter, spans):
        with pytest.raises(TimeoutError):
            tasks.caller_plain.apply_async_and_get_result(args=(1,), timeout=0)

        producer, timeout = _finished(spans)
        result_attributes = producer["attributes"]
        assert _summary(timeout) == {
            "name": "get tests.tasks.caller_plain",
            "kind": "SpanKind.INTERNAL",
            "attributes": {
                "messaging.message.conversation_id": result_attributes[
                    "messaging.message.conversation_id"
                ],
                "celery_events.task.name": "tests.tasks.caller_plain",
                "messaging.message.id": result_attributes["messaging.message.id"],
                "error.type": "celery.exceptions.TimeoutError",
            },
            "events": [  # with timeout=0 the error is reported before it is raised: no frames
                _exception_event(
                    "celery.exceptions.TimeoutError",
                    "The operation timed out.",
                    "celery.exceptions.TimeoutError: The operation timed out.\n",
                )
            ],
            "status": {
                "status_code": "ERROR",
                "description": "celery.exceptions.TimeoutError: The operation timed out.",
            },
        }
        _assert_child(timeout, producer)

    def test_timed_out_wait_of_a_unique_call_is_under_its_own_producer_span(self, exporter, spans):
        tasks.caller_unique.apply_async(args=(2,))
        second = tasks.caller_unique.apply_async(args=(2,))
        with pytest.raises(TimeoutError):
            second.get(timeout=0.1)

        _, producer, timeout = _finished(spans)
        assert producer["attributes"]["celery_events.invocation.outcome"] == "unique"
        assert timeout["name"] == "get tests.tasks.caller_unique"
        _assert_child(timeout, producer)

    def test_triggered_calls_span_ends_once_the_broker_took_the_message(self, exporter, spans):
        finished_when_publishing = []

        def publishing(**_):
            finished_when_publishing.append(len(spans.get_finished_spans()))

        before_task_publish.connect(publishing, weak=False)
        try:
            tasks.caller_plain.apply_async(args=(1,))
        finally:
            before_task_publish.disconnect(publishing)

        assert finished_when_publishing == [0]
        assert len(spans.get_finished_spans()) == 1

    def test_publish_the_broker_refuses_is_an_error_producer_span(
        self, exporter, spans, refusing_broker
    ):
        with capture_events() as events, pytest.raises(OperationalError) as refused:
            tasks.caller_plain.apply_async(args=(1,), connection=refusing_broker, retry=False)

        (producer,) = _finished(spans)
        failure = events[-1].kwargs
        error_type = "kombu.exceptions.OperationalError"
        expected = _producer(
            tasks.caller_plain,
            failure["result"],
            outcome="failed",
            queue="caller-only",
            task_id=failure["task_id"],
            **{"error.type": error_type},
        )
        expected["events"] = [_exception_event(error_type, str(refused.value))]
        expected["status"] = {
            "status_code": "ERROR",
            "description": f"{error_type}: {refused.value}",
        }
        assert _summary(producer) == expected

    def test_lock_store_down_is_an_error_producer_span(self, exporter, spans, lock_store_down):
        with pytest.raises(LockStoreUnavailableError):
            tasks.caller_unique.apply_async(args=(1,))

        (producer,) = _finished(spans)
        assert producer["attributes"]["celery_events.invocation.outcome"] == "failed"
        assert producer["attributes"]["error.type"] == (
            "celery_events.locks.base.LockStoreUnavailableError"
        )
        assert producer["status"]["status_code"] == "ERROR"

    @pytest.mark.django_db(transaction=True)
    def test_on_commit_call_is_a_producer_span_that_waits_for_the_commit(self, exporter, spans):
        with transaction.atomic():
            result = tasks.caller_plain.apply_async_on_commit(args=(1,))
            assert spans.get_finished_spans() == ()
            before_commit = time.time_ns()

        (producer,) = spans.get_finished_spans()
        assert producer.end_time > before_commit
        assert _summary(json.loads(producer.to_json())) == _producer(
            tasks.caller_plain,
            result,
            outcome="triggered",
            queue="caller-only",
            task_id=result.task_id,
            **{"celery_events.invocation.on_commit": True},
        )


class TestEager:
    def test_success_is_a_consumer_span_under_the_producer_span(self, exporter, eager, spans):
        result = tasks.add.apply_async(args=(1, 2))

        producer, consumer = _finished(spans)
        assert _summary(producer) == _producer(
            tasks.add, result, outcome="triggered", queue="worker", task_id=result.task_id
        )
        assert _summary(consumer) == _consumer(tasks.add, result, retries=0, state="SUCCESS")
        _assert_child(consumer, producer)

    def test_apply_is_a_producer_span_named_apply(self, exporter, spans):
        result = tasks.add.apply(args=(1, 2))

        producer, consumer = _finished(spans)
        assert _summary(producer) == _producer(
            tasks.add,
            result,
            outcome="triggered",
            queue="worker",
            task_id=result.task_id,
            operation="apply",
        )
        _assert_child(consumer, producer)

    def test_retry_then_success_is_a_consumer_span_per_attempt(self, exporter, eager, spans):
        result = tasks.flaky.apply_async(args=(2,))

        assert result.get() == 2
        _, *attempts = _finished(spans)
        assert [_summary(span) for span in attempts] == [
            _consumer(
                tasks.flaky,
                result,
                retries=0,
                state="RETRY",
                events=[_retry_event("attempt 0 fails")],
            ),
            _consumer(
                tasks.flaky,
                result,
                retries=1,
                state="RETRY",
                events=[_retry_event("attempt 1 fails")],
            ),
            _consumer(tasks.flaky, result, retries=2, state="SUCCESS"),
        ]

    def test_retry_event_carries_when_the_next_attempt_is_due(self, exporter, eager, spans):
        tasks.flaky.apply_async(args=(1,))

        first_attempt = spans.get_finished_spans()[1]
        (retry,) = first_attempt.events
        eta = datetime.fromisoformat(retry.attributes["celery_events.retry.eta"])
        assert (eta.timestamp() - first_attempt.end_time / 1e9) == pytest.approx(0.1, abs=0.05)

    def test_every_attempt_of_a_retried_call_is_under_the_producer_span(
        self, exporter, eager, spans
    ):
        tasks.flaky.apply_async(args=(2,))

        producer, *attempts = _finished(spans)
        assert len(attempts) == 3
        for attempt in attempts:
            _assert_child(attempt, producer)

    def test_final_failure_is_an_error_consumer_span(self, exporter, eager, spans):
        result = tasks.flaky.apply_async(args=(5,))

        assert result.state == "FAILURE"
        assert _summary(_finished(spans)[-1]) == _consumer(
            tasks.flaky,
            result,
            retries=2,
            state="FAILURE",
            error=("tests.tasks.FlakyError", "attempt 2 fails"),
        )

    def test_failure_without_retry_is_an_error_consumer_span(self, exporter, eager, spans):
        result = tasks.always_fails.apply_async(args=(1,))

        producer, consumer = _finished(spans)
        assert _summary(consumer) == _consumer(
            tasks.always_fails,
            result,
            retries=0,
            state="FAILURE",
            error=("ValueError", "always fails with 1"),
        )
        _assert_child(consumer, producer)

    def test_consumer_span_is_current_while_the_task_runs_and_not_after(
        self, exporter, eager, spans
    ):
        result = tasks.current_span_id.apply_async()

        _, consumer = spans.get_finished_spans()
        assert result.get() == f"{consumer.context.span_id:016x}"
        assert trace.get_current_span() is trace.INVALID_SPAN

    def test_attempt_that_raises_ignore_ends_its_span_and_context(self, exporter, eager, spans):
        result = tasks.raises_ignore.apply_async()

        _, consumer = _finished(spans)
        assert _summary(consumer) == _consumer(
            tasks.raises_ignore, result, retries=0, state="IGNORED"
        )
        assert trace.get_current_span() is trace.INVALID_SPAN

    @override_settings(
        DJANGO_CELERY_EXTENSIONS_EXPORTERS={"opentelemetry": {"link_to_producer": True}}
    )
    def test_link_to_producer_starts_each_attempt_in_its_own_trace_linked_to_the_producer(
        self, eager, spans
    ):
        tasks.add.apply_async(args=(1, 2))

        producer, consumer = spans.get_finished_spans()
        assert consumer.parent is None
        assert consumer.context.trace_id != producer.context.trace_id
        assert [(link.context.trace_id, link.context.span_id) for link in consumer.links] == [
            (producer.context.trace_id, producer.context.span_id)
        ]


class TestInFlight:
    @pytest.mark.parametrize(
        ("task", "args"),
        [
            (tasks.add, (1, 2)),
            (tasks.flaky, (1,)),
            (tasks.flaky, (5,)),
            (tasks.raises_ignore, ()),
            (tasks.ignored_after_success, (3,)),
        ],
        ids=["success", "retry-then-success", "final-failure", "ignore", "ignored-call"],
    )
    def test_every_end_path_forgets_its_spans(self, exporter, eager, task, args):
        task.apply_async(args=args)
        task.apply_async(args=args)

        assert len(exporter._calls) == 0
        assert len(exporter._attempts) == 0

    @pytest.mark.django_db(transaction=True)
    @override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS={"opentelemetry": {"max_in_flight": 2}})
    def test_calls_that_never_trigger_do_not_grow_past_the_bound(self, spans):
        exporter = apps.get_app_config("celery_events").exporters[0]

        for _ in range(5):  # rolled back: each call's producer span waits for ever
            with transaction.atomic():
                tasks.caller_plain.apply_async_on_commit(args=(1,))
                transaction.set_rollback(True)

        assert len(exporter._calls) == 2
        assert spans.get_finished_spans() == ()


def _point(task, **attributes):
    return {"celery_events.task.name": task.name, **attributes}


def _sent(task, queue, operation="apply_async", **attributes):
    return {
        "messaging.system": "celery",
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
        "celery_events.task.name": task.name,
        **BROKER,
        **attributes,
    }


def _processed(task, **attributes):
    return {
        "messaging.system": "celery",
        "messaging.operation.name": "run",
        "celery_events.task.name": task.name,
        **attributes,
    }


class TestMetrics:
    def test_sent_messages_are_counted_by_task_and_queue(self, exporter, read_metrics):
        tasks.caller_unique.apply_async(args=(3,))
        tasks.caller_unique.apply_async(args=(3,))
        tasks.caller_plain.apply_async(args=(1,))
        tasks.caller_plain.apply_async(args=(2,))

        assert read_metrics()["messaging.client.sent.messages"] == sorted(
            [
                (_sent(tasks.caller_plain, "caller-only"), 2),
                (_sent(tasks.caller_unique, "caller-only"), 1),
            ],
            key=repr,
        )

    def test_publish_durations_are_recorded_as_send_operations(self, exporter, read_metrics):
        tasks.caller_plain.apply_async(args=(1,))

        ((attributes, (count, seconds)),) = read_metrics()["messaging.client.operation.duration"]
        assert attributes == _sent(
            tasks.caller_plain, "caller-only", **{"messaging.operation.type": "send"}
        )
        assert count == 1
        assert seconds > 0

    def test_calls_that_publish_nothing_are_counted_by_outcome(self, exporter, read_metrics):
        tasks.caller_unique.apply_async(args=(3,))
        tasks.caller_unique.apply_async(args=(3,))

        assert read_metrics()["celery_events.invocations.unpublished"] == [
            (_point(tasks.caller_unique, **{"celery_events.invocation.outcome": "unique"}), 1),
        ]

    def test_refused_publish_is_a_sent_message_with_its_error_type(
        self, exporter, read_metrics, refusing_broker
    ):
        with pytest.raises(OperationalError):
            tasks.caller_plain.apply_async(args=(1,), connection=refusing_broker, retry=False)

        recorded = read_metrics()
        error = {"error.type": "kombu.exceptions.OperationalError"}
        assert recorded["messaging.client.sent.messages"] == [
            (_sent(tasks.caller_plain, "caller-only", **error), 1)
        ]
        assert "celery_events.invocations.unpublished" not in recorded

    def test_lock_store_down_is_an_unpublished_failed_call(
        self, exporter, read_metrics, lock_store_down
    ):
        with pytest.raises(LockStoreUnavailableError):
            tasks.caller_unique.apply_async(args=(1,))

        recorded = read_metrics()
        assert recorded["celery_events.invocations.unpublished"] == [
            (_point(tasks.caller_unique, **{"celery_events.invocation.outcome": "failed"}), 1),
        ]
        assert "messaging.client.sent.messages" not in recorded

    def test_ignored_calls_are_counted_as_unpublished(self, exporter, eager, read_metrics):
        tasks.ignored_after_success.apply_async(args=(9,))
        tasks.ignored_after_success.apply_async(args=(9,))

        task = tasks.ignored_after_success
        recorded = read_metrics()
        assert recorded["celery_events.invocations.unpublished"] == [
            (_point(task, **{"celery_events.invocation.outcome": "ignored"}), 1),
        ]
        assert recorded["messaging.client.sent.messages"] == [(_sent(task, "worker"), 1)]

    def test_attempts_are_consumed_messages_and_process_durations_by_final_state(
        self, exporter, eager, read_metrics
    ):
        tasks.flaky.apply_async(args=(1,))
        tasks.always_fails.apply_async(args=(1,))

        recorded = read_metrics()
        assert recorded["messaging.client.consumed.messages"] == sorted(
            [(_processed(tasks.always_fails), 1), (_processed(tasks.flaky), 2)], key=repr
        )
        durations = recorded["messaging.process.duration"]
        assert [(attributes, count) for attributes, (count, _) in durations] == sorted(
            [
                (_processed(tasks.flaky, **{"celery_events.task.state": "RETRY"}), 1),
                (_processed(tasks.flaky, **{"celery_events.task.state": "SUCCESS"}), 1),
                (
                    _processed(
                        tasks.always_fails,
                        **{"celery_events.task.state": "FAILURE", "error.type": "ValueError"},
                    ),
                    1,
                ),
            ],
            key=repr,
        )
        assert all(seconds > 0 for _, (_, seconds) in durations)


# Across processes: the caller here, the attempts in a real worker.


def _worker_spans(redis_client, result, count):
    """Wait for the worker's ``count`` spans of the call; return them in end order."""
    return wait_for(
        lambda: (
            len(found := exporter_worker.read_spans(redis_client, result.invocation_id)) >= count
            and found
        ),
        f"{count} worker spans of call {result.invocation_id}",
    )


@pytest.mark.worker
class TestWorker:
    def test_plain_call_is_one_trace_across_the_processes(
        self, exporter, spans, exporters_worker, redis_client
    ):
        result = tasks.add.apply_async(args=(2, 3), queue=exporter_worker.QUEUE)

        assert result.get(timeout=30) == 5
        (producer,) = _finished(spans)
        (consumer,) = _worker_spans(redis_client, result, 1)
        assert _summary(producer) == _producer(
            tasks.add, result, outcome="triggered", queue="exporters", task_id=result.task_id
        )
        assert _summary(consumer) == _consumer(
            tasks.add, result, retries=0, state="SUCCESS", queue="exporters"
        )
        _assert_child(consumer, producer)

    def test_queue_wait_of_a_call_with_an_eta_counts_from_the_eta(
        self, exporter, exporters_worker, redis_client
    ):
        # Due half an hour ago: the worker runs it at once, and it has waited since its eta.
        due = timezone.now() - timedelta(minutes=30)
        result = tasks.add.apply_async(args=(20, 30), queue=exporter_worker.QUEUE, eta=due)

        assert result.get(timeout=30) == 50
        (consumer,) = _worker_spans(redis_client, result, 1)
        wait = consumer["attributes"]["celery_events.task.queue_wait"]
        assert 1800 <= wait < 3600
        point = wait_for(
            lambda: next(
                (
                    point
                    for point in exporter_worker.read_queue_waits(redis_client, tasks.add.name)
                    if point["sum"] == wait
                ),
                None,
            ),
            "the worker's queue wait point of the call",
        )
        assert point == {
            "attributes": {
                "celery_events.task.name": tasks.add.name,
                "messaging.destination.name": exporter_worker.QUEUE,
            },
            "count": 1,
            "sum": wait,
        }

    def test_queue_wait_of_a_message_without_eta_counts_from_its_trigger_time(
        self, exporters_worker, redis_client
    ):
        # Published as django-celery-extensions did: its trigger time in ISO 8601, an hour ago.
        sent = timezone.now() - timedelta(hours=1)
        result = Task.apply_async(
            tasks.add,
            args=(4, 5),
            queue=exporter_worker.QUEUE,
            headers={"trigger_time": sent.isoformat()},
        )

        assert result.get(timeout=30) == 9
        (consumer,) = wait_for(
            lambda: exporter_worker.read_spans(redis_client, result.id), "the worker's span"
        )
        assert 3600 <= consumer["attributes"]["celery_events.task.queue_wait"] < 7200

    @pytest.mark.django_db(transaction=True)
    def test_on_commit_call_is_one_trace_across_the_processes(
        self, exporter, spans, exporters_worker, redis_client
    ):
        with transaction.atomic():
            result = tasks.add.apply_async_on_commit(args=(2, 3), queue=exporter_worker.QUEUE)
            assert result.state == "WAITING"
            before_commit = time.time_ns()

        assert result.get(timeout=30) == 5
        (producer_span,) = spans.get_finished_spans()
        assert producer_span.end_time > before_commit
        producer = json.loads(producer_span.to_json())
        (consumer,) = _worker_spans(redis_client, result, 1)
        assert producer["attributes"]["celery_events.invocation.on_commit"] is True
        assert _summary(consumer) == _consumer(
            tasks.add, result, retries=0, state="SUCCESS", queue="exporters"
        )
        _assert_child(consumer, producer)

    def test_retried_call_is_a_consumer_span_per_attempt(
        self, exporter, spans, exporters_worker, redis_client
    ):
        result = tasks.flaky.apply_async(args=(2,), queue=exporter_worker.QUEUE)

        assert result.get(timeout=30) == 2
        (producer,) = _finished(spans)
        attempts = _worker_spans(redis_client, result, 3)
        assert [_summary(span) for span in attempts] == [
            _consumer(
                tasks.flaky,
                result,
                retries=0,
                state="RETRY",
                queue="exporters",
                events=[_retry_event("attempt 0 fails")],
            ),
            _consumer(
                tasks.flaky,
                result,
                retries=1,
                state="RETRY",
                queue="exporters",
                events=[_retry_event("attempt 1 fails")],
            ),
            _consumer(tasks.flaky, result, retries=2, state="SUCCESS", queue="exporters"),
        ]
        _assert_child(attempts[0], producer)

    def test_every_attempt_of_a_retried_call_is_under_the_producer_span(
        self, exporter, spans, exporters_worker, redis_client
    ):
        result = tasks.flaky.apply_async(args=(1,), queue=exporter_worker.QUEUE)

        assert result.get(timeout=30) == 1
        (producer,) = _finished(spans)
        for attempt in _worker_spans(redis_client, result, 2):
            _assert_child(attempt, producer)

    def test_final_failure_is_an_error_consumer_span(
        self, exporter, spans, exporters_worker, redis_client
    ):
        result = tasks.always_fails.apply_async(args=(4,), queue=exporter_worker.QUEUE)

        with pytest.raises(ValueError, match="always fails with 4"):
            result.get(timeout=30)
        (producer,) = _finished(spans)
        (consumer,) = _worker_spans(redis_client, result, 1)
        assert _summary(consumer) == _consumer(
            tasks.always_fails,
            result,
            retries=0,
            state="FAILURE",
            queue="exporters",
            error=("ValueError", "always fails with 4"),
        )
        _assert_child(consumer, producer)


@pytest.fixture(name="amqp_exporters_worker", scope="session")
def fixture_amqp_exporters_worker(redis_client, amqp_producer, tmp_path_factory):
    """A real worker with both exporters on, consuming a queue of its own from RabbitMQ."""
    with running_worker(
        tmp_path_factory.mktemp("amqp-worker") / "worker.log",
        AMQP_QUEUE,
        env={**exporter_worker.WORKER_ENV, "CELERY_EVENTS_TEST_BROKER_URL": AMQP_URL},
        worker_args=exporter_worker.worker_args("amqp-exporters"),
        publish_options={"producer": amqp_producer},
    ) as process:
        yield process
    # Celery declared a durable queue and an exchange of that name: remove them.
    amqp_producer.channel.queue_delete(AMQP_QUEUE)
    amqp_producer.channel.exchange_delete(AMQP_QUEUE)


@pytest.mark.worker
def test_trace_context_and_invocation_id_cross_amqp_headers(
    exporter, spans, amqp_exporters_worker, amqp_producer, redis_client
):
    result = tasks.add.apply_async(args=(2, 3), queue=AMQP_QUEUE, producer=amqp_producer)

    assert result.get(timeout=30) == 5
    (producer,) = _finished(spans)
    (consumer,) = _worker_spans(redis_client, result, 1)
    assert _summary(consumer) == _consumer(
        tasks.add, result, retries=0, state="SUCCESS", queue=AMQP_QUEUE
    )
    _assert_child(consumer, producer)


# Reading spans back.


def _span(name, kind, span_id, *, parent_id=None, start_ms=0, end_ms=1, **fields):
    trace_id = 0xA
    return ReadableSpan(
        name=name,
        context=SpanContext(trace_id, span_id, is_remote=False),
        parent=None if parent_id is None else SpanContext(trace_id, parent_id, is_remote=False),
        kind=kind,
        start_time=start_ms * 1_000_000,
        end_time=end_ms * 1_000_000,
        **fields,
    )


def test_format_span_tree_draws_parents_children_kinds_durations_and_outcomes():
    spans = [
        _span(
            "run tests.tasks.flaky",
            SpanKind.CONSUMER,
            3,
            parent_id=1,
            start_ms=30,
            end_ms=42,
            attributes={"celery_events.task.state": "SUCCESS", "celery_events.task.retries": 1},
        ),
        _span(
            "apply_async tests.tasks.flaky",
            SpanKind.PRODUCER,
            1,
            start_ms=0,
            end_ms=2,
            attributes={"celery_events.invocation.outcome": "triggered"},
        ),
        _span(
            "run tests.tasks.flaky",
            SpanKind.CONSUMER,
            2,
            parent_id=1,
            start_ms=5,
            end_ms=8,
            attributes={"celery_events.task.state": "RETRY", "celery_events.task.retries": 0},
            events=[
                Event(
                    "retry",
                    {
                        "celery_events.retry.eta": "2026-01-01T00:00:00.100000+00:00",
                        "exception.type": "tests.tasks.FlakyError",
                        "exception.message": "attempt 0 fails",
                    },
                )
            ],
        ),
        _span("get tests.tasks.flaky", SpanKind.INTERNAL, 4, parent_id=1, start_ms=9, end_ms=9),
        _span(
            "run tests.tasks.always_fails",
            SpanKind.CONSUMER,
            6,
            start_ms=50,
            end_ms=51,
            attributes={"celery_events.task.state": "FAILURE", "celery_events.task.retries": 0},
            status=Status(StatusCode.ERROR, "ValueError: always fails with 1"),
            links=[Link(SpanContext(0xA, 5, is_remote=True))],
        ),
        _span(
            "apply_async tests.tasks.always_fails",
            SpanKind.PRODUCER,
            5,
            start_ms=45,
            end_ms=46,
            attributes={"celery_events.invocation.outcome": "triggered"},
        ),
    ]

    assert format_span_tree(spans).splitlines() == [
        "apply_async tests.tasks.flaky · PRODUCER · 2.0 ms · triggered",
        (
            "├── run tests.tasks.flaky · CONSUMER · 3.0 ms · RETRY (retries=0) · retry at "
            "2026-01-01T00:00:00.100000+00:00 after tests.tasks.FlakyError: attempt 0 fails"
        ),
        "├── get tests.tasks.flaky · INTERNAL · 0.0 ms",
        "└── run tests.tasks.flaky · CONSUMER · 12.0 ms · SUCCESS (retries=1)",
        "apply_async tests.tasks.always_fails · PRODUCER · 1.0 ms · triggered",
        (
            "run tests.tasks.always_fails · CONSUMER · 1.0 ms · FAILURE (retries=0) · "
            "ERROR ValueError: always fails with 1 · "
            "linked to apply_async tests.tasks.always_fails"
        ),
    ]


def test_format_span_tree_of_no_spans_is_empty():
    assert format_span_tree([]) == ""


def test_format_span_tree_draws_the_spans_of_a_real_call(exporter, eager, spans):
    tasks.always_fails.apply_async(args=(1,))

    lines = format_span_tree(spans.get_finished_spans()).splitlines()
    assert [line.split(" · ")[:2] + line.split(" · ")[3:] for line in lines] == [
        ["apply_async tests.tasks.always_fails", "PRODUCER", "triggered"],
        [
            "└── run tests.tasks.always_fails",
            "CONSUMER",
            "FAILURE (retries=0)",
            "ERROR ValueError: always fails with 1",
        ],
    ]
