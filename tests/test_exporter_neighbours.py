"""The exporters beside the tools users already run, each combination with a real worker.

Three combinations, each a worker of its own with both exporters on: the exporters alone; beside
opentelemetry-instrumentation-celery (instrumented in the worker and in the tests' process, as
``opentelemetry-instrument`` does it); beside django-structlog's Celery support (its receivers
connected in the worker, as its ``DjangoStructLogInitStep`` does, and in the tests' process).
In each, a call is one trace whose attempts are children of the call's PRODUCER span, with no
duplicate span per message, and each attempt's events are logged once, a called task's lines
carrying its own invocation id only.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import pytest
from celery.result import AsyncResult
from celery.signals import after_task_publish, before_task_publish
from django.test import override_settings

from tests import exporter_worker, tasks
from tests.conftest import running_worker, wait_for
from tests.exporter_worker import DJANGO_STRUCTLOG, INSTRUMENTOR
from tests.telemetry import fixture_spans  # noqa: F401 - the spans fixture

ATTEMPT_EVENTS = ("task_started", "task_retrying", "task_failed", "task_succeeded")


class Combination(NamedTuple):
    """A worker with both exporters on, beside ``neighbour`` (None: alone), on ``queue``."""

    neighbour: str | None
    queue: str


@pytest.fixture(
    name="combination",
    scope="module",
    params=[None, INSTRUMENTOR, DJANGO_STRUCTLOG],
    ids=["alone", "beside-the-instrumentor", "beside-django-structlog"],
)
def fixture_combination(request, redis_client, tmp_path_factory):
    neighbour = request.param
    if neighbour is not None:
        pytest.importorskip(
            "opentelemetry.instrumentation.celery"
            if neighbour == INSTRUMENTOR
            else "django_structlog",
            reason=f"{neighbour} is not installed",
        )
    name = f"neighbours-{neighbour or 'none'}"
    env = dict(exporter_worker.WORKER_ENV)
    if neighbour is not None:
        env[exporter_worker.NEIGHBOUR_ENV_VAR] = neighbour
    with running_worker(
        tmp_path_factory.mktemp(name) / "worker.log",
        name,
        env=env,
        worker_args=exporter_worker.worker_args(name),
    ):
        yield Combination(neighbour, name)


@pytest.fixture(name="caller")
def fixture_caller(combination):
    """The tests' process as a caller beside the same tool, with both exporters on."""
    with override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["opentelemetry"]):
        if combination.neighbour == INSTRUMENTOR:
            from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415

            CeleryInstrumentor().instrument()
            yield combination
            CeleryInstrumentor().uninstrument()
        elif combination.neighbour == DJANGO_STRUCTLOG:
            from django_structlog.celery.receivers import CeleryReceiver  # noqa: PLC0415

            receiver = CeleryReceiver()
            receiver.connect_signals()
            yield combination
            # django-structlog has no way to disconnect them: what connect_signals() connected.
            before_task_publish.disconnect(receiver.receiver_before_task_publish)
            after_task_publish.disconnect(receiver.receiver_after_task_publish)
        else:
            yield combination


def _hex(span_id: int) -> str:
    return f"0x{span_id:016x}"


def _spans_of_the_call(spans, redis_client, result, attempts):
    """Return the call's spans of both processes, once its last attempt's span is in Redis."""
    caller = [span for span in spans.get_finished_spans() if span.kind.name == "PRODUCER"]
    trace_id = f"0x{caller[0].context.trace_id:032x}"

    def worker_spans():
        found = exporter_worker.read_trace(redis_client, trace_id)
        consumers = [span for span in found if span["kind"] == "SpanKind.CONSUMER"]
        return len(consumers) >= attempts and found

    found = wait_for(worker_spans, f"the worker's {attempts} attempt spans of {result.task_id}")
    return [
        {
            "id": _hex(span.context.span_id),
            "parent": None if span.parent is None else _hex(span.parent.span_id),
            "kind": span.kind.name,
            "attributes": dict(span.attributes),
        }
        for span in caller
    ] + [
        {
            "id": span["context"]["span_id"],
            "parent": span["parent_id"],
            "kind": span["kind"].removeprefix("SpanKind."),
            "attributes": span["attributes"],
        }
        for span in found
    ]


@pytest.mark.worker
def test_a_retried_call_is_one_tree_of_its_producer_span_and_sibling_attempts(
    caller, spans, redis_client
):
    result = tasks.flaky.apply_async(args=(2,), queue=caller.queue)

    assert result.get(timeout=30) == 2
    found = _spans_of_the_call(spans, redis_client, result, attempts=3)
    ids = {span["id"] for span in found}
    assert [span for span in found if span["parent"] not in ids | {None}] == []
    (call,) = [
        span
        for span in found
        if span["kind"] == "PRODUCER"
        and span["attributes"].get("messaging.message.conversation_id") == result.invocation_id
    ]
    assert call["parent"] is None
    assert call["attributes"]["celery_events.invocation.outcome"] == "triggered"
    attempts = [span for span in found if span["kind"] == "CONSUMER"]
    assert [
        (
            span["parent"],
            span["attributes"]["celery_events.task.retries"],
            span["attributes"]["celery_events.task.state"],
            span["attributes"]["messaging.message.conversation_id"],
        )
        for span in attempts
    ] == [
        (call["id"], 0, "RETRY", result.invocation_id),
        (call["id"], 1, "RETRY", result.invocation_id),
        (call["id"], 2, "SUCCESS", result.invocation_id),
    ]
    # One PRODUCER span per message published: the call's and, beside the instrumentor (which
    # traces every publish), each retry's, made inside the attempt that retried.
    retries = [span for span in found if span["kind"] == "PRODUCER" and span is not call]
    expected = [attempts[0]["id"], attempts[1]["id"]] if caller.neighbour == INSTRUMENTOR else []
    assert [span["parent"] for span in retries] == expected
    assert {span["kind"] for span in found} == {"PRODUCER", "CONSUMER"}


def _attempt_lines(redis_client, task_id, last_event):
    return wait_for(
        lambda: (
            (found := exporter_worker.read_log_lines(redis_client, task_id))
            and any(line["event"] == last_event for line in found)
            and found
        ),
        f"the worker's {last_event} line of {task_id}",
    )


@pytest.mark.worker
def test_each_attempt_event_is_logged_once_and_a_child_carries_its_own_invocation_id(
    caller, redis_client
):
    parent = tasks.calls_flaky_child.apply_async(args=(caller.queue, 1), queue=caller.queue)
    child = AsyncResult(parent.get(timeout=30))
    assert child.get(timeout=30) == 1

    parent_lines = _attempt_lines(redis_client, parent.task_id, "task_succeeded")
    child_lines = _attempt_lines(redis_client, child.id, "task_succeeded")
    assert Counter(line["event"] for line in parent_lines if line["event"] in ATTEMPT_EVENTS) == {
        "task_started": 1,
        "task_succeeded": 1,
    }
    assert Counter(line["event"] for line in child_lines if line["event"] in ATTEMPT_EVENTS) == {
        "task_started": 2,
        "task_retrying": 1,
        "task_succeeded": 1,
    }
    # The child's invocation id is its task id: it was called without naming one.
    assert {line.get("invocation_id") for line in child_lines} <= {child.id, None}
    assert {line["invocation_id"] for line in parent_lines if line["event"] == "calling_child"} == {
        parent.invocation_id
    }
