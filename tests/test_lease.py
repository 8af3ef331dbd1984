"""Joins and locks that hold whatever the timing: the lease and the outcome kept with the lock.

One test per scenario of the locks page's guarantees, each with real workers on the broker it
concerns: the session's workers on Redis, and workers of a test's own where the scenario needs a
setting of its own (no result backend, a short visibility timeout) or a lock store or result
backend that the test kills and starts again (a redis-server of its own, never the shared one).
"""

from __future__ import annotations

import gc
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from celery import Celery, chain, group
from celery.app.task import Task
from celery.signals import before_task_publish
from django.conf import settings as django_settings
from kombu.transport.redis import Channel as RedisChannel

from celery_events.config import settings as ce_settings
from celery_events.locks import RedisLockStore, get_lock_store
from celery_events.locks.base import WAITERS_PREFIX
from tests import tasks
from tests.conftest import running_worker, wait_for
from tests.lock_helpers import redis_cache, use_cache
from tests.services import restartable_redis

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from celery.result import AsyncResult, GroupResult

pytestmark = pytest.mark.worker


def _logged(*words: str) -> bool:
    return any(all(word in line for word in words) for line in tasks.worker_log())


def _parked(task: Task[Any, Any], holder: str, *args: Any) -> int:
    """How many stand-ins are parked beside the lock of ``task(*args)``, waiting for ``holder``."""
    store = get_lock_store()
    assert isinstance(store, RedisLockStore)
    unique_key = task.unique_key_generator(ce_settings.UNIQUE_TASK_KEY_PREFIX, args, {})
    waiters = store.binding.key(f"{WAITERS_PREFIX}|{holder}", beside=unique_key)
    return int(store.binding.client.hlen(waiters))


@pytest.fixture(name="published")
def fixture_published() -> Iterator[dict[str, dict[str, Any]]]:
    """The messages published while the test runs, by task id: their headers and body."""
    messages: dict[str, dict[str, Any]] = {}

    def record(headers: dict[str, Any], body: Any, **_: Any) -> None:
        messages.setdefault(headers["id"], {"headers": dict(headers), "body": body})

    before_task_publish.connect(record, weak=False)
    yield messages
    before_task_publish.disconnect(record)


def _deliver_again(task: Task[Any, Any], message: dict[str, Any], queue: str) -> None:
    """Publish ``message`` of ``task`` a second time, as a broker delivers one again.

    Celery's own ``apply_async`` with the message's task id and headers: what a second delivery
    of the message (RabbitMQ's after a lost connection, a Redis broker's after its visibility
    timeout) hands the worker. The tests of those brokers' own redeliveries are in
    tests/test_worker.py and below.
    """
    headers = message["headers"]
    args, kwargs, embed = message["body"]
    own = {name: value for name, value in headers.items() if name not in _CELERY_HEADERS}
    Task.apply_async(
        task,
        args,
        kwargs,
        task_id=headers["id"],
        headers=own,
        queue=queue,
        **{name: embed[name] for name in ("chain", "callbacks", "errbacks") if embed.get(name)},
    )


#: Celery's protocol 2 headers, which its apply_async writes itself.
_CELERY_HEADERS = frozenset(
    (
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
    )
)


# 1, 2: the automatic expiry counts from the eta, and a retry does not inherit it.


def test_call_due_after_its_automatic_expiry_counted_from_the_call_still_runs(worker):
    argument = uuid.uuid4().hex
    # time_limit 2, stale_time_limit 5: the automatic expiry comes 3 s after the call is due.
    result = tasks.lease_time_limited.apply_async(args=(argument,), countdown=6)

    assert result.get(timeout=30) == argument
    assert result.options["expires"] > result.options["eta"]


def test_retry_due_after_the_calls_automatic_expiry_still_runs(worker):
    # The first attempt retries 4 s later, past the first message's automatic expiry (3 s).
    result = tasks.lease_retried_late.apply_async(args=(uuid.uuid4().hex,))

    assert result.get(timeout=30) == 1


# 3: replace() by the same call hands the lock over.


def test_replace_by_the_same_call_keeps_the_lock_until_the_replacement_ends(worker):
    gate = uuid.uuid4().hex
    first = tasks.lease_replaced.apply_async(args=(gate,))
    wait_for(lambda: tasks.has_started(gate), "the replacement to start")

    processing = tasks.lease_replaced.is_processing(args=(gate,))
    second = tasks.lease_replaced.apply_async(args=(gate,))
    tasks.open_gate(gate)

    assert processing
    assert second.id == first.id  # joined the replacement, which runs under the same task id
    assert first.get(timeout=30) == first.id
    wait_for(
        lambda: not tasks.lease_replaced.is_processing(args=(gate,)),
        "the replacement to free the lock",
    )


# 4, 5: outages of the lock store and of the result backend while stand-ins wait.


@pytest.fixture(name="private_worker")
def fixture_private_worker(tmp_path) -> Callable[..., Any]:
    """Start a prefork worker of three processes on a queue of the test's own."""

    def start(queue: str, env: dict[str, str], **options: Any) -> Any:
        return running_worker(
            tmp_path / f"{queue}.log",
            queue,
            env=env,
            worker_args=("-P", "prefork", "-c", "3"),
            **options,
        )

    return start


def _members_parked_beside_a_holder(
    queue: str, gate: str, value: int
) -> tuple[AsyncResult, GroupResult]:
    """Start a holder of ``concurrent_gated(gate, value)`` on ``queue``, then a group of three
    calls of it; return them once the three members are parked beside the running holder."""
    holder = tasks.concurrent_gated.apply_async(args=(gate, value), queue=queue)
    wait_for(lambda: tasks.has_started(gate), "the holder's body to start")
    members = group(tasks.concurrent_gated.s(gate, value) for _ in range(3)).apply_async(
        queue=queue
    )
    wait_for(
        lambda: _parked(tasks.concurrent_gated, holder.id, gate, value) == 3,
        "the members to be parked beside the holder",
    )
    return holder, members


def test_stand_ins_outlive_a_lock_store_outage_and_get_the_holders_outcome(
    private_worker, settings, worker_events
):
    queue, gate = f"lock-outage-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with restartable_redis() as lock_store:
        # The worker's cache, on the same Redis and key prefix (tests/settings.py).
        use_cache(settings, "outage", redis_cache(lock_store.url, prefix="cache"))
        with private_worker(queue, {"CELERY_EVENTS_TEST_CACHE_URL": lock_store.url}):
            holder, members = _members_parked_beside_a_holder(queue, gate, 7)
            lock_store.kill()
            tasks.open_gate(gate)
            assert holder.get(timeout=30) == 7
            wait_for(lambda: _logged("could not look at"), "a member to meet the outage")
            lock_store.start()  # three seconds or so later, empty

            assert members.get(timeout=60) == [7, 7, 7]
    member_events = [worker_events(member.id) for member in members.results]
    assert member_events == [[], [], []]  # no attempt event for a stand-in that ran nothing


def test_stand_ins_outlive_a_result_backend_outage(private_worker):
    queue, gate = f"backend-outage-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with restartable_redis() as backend:
        # The worker's result backend, under the same key prefix (tests/settings.py).
        results = Celery("results-of-the-outage", backend=backend.url, set_as_current=False)
        results.conf.result_backend_transport_options = {
            "global_keyprefix": django_settings.KEY_PREFIX
        }
        with private_worker(
            queue, {"CELERY_EVENTS_TEST_RESULT_BACKEND": backend.url}, answers=_records
        ):
            _, members = _members_parked_beside_a_holder(queue, gate, 5)
            backend.kill()
            tasks.open_gate(gate)
            wait_for(lambda: _logged("result backend unreachable"), "a member to meet the outage")
            backend.start()

            outcomes = [
                results.AsyncResult(member.id).get(timeout=60) for member in members.results
            ]
            # A result unsubscribes from its Redis when it is collected (AsyncResult.__del__):
            # it must be while that Redis runs, not in a later test.
            gc.collect()

    assert outcomes == [5, 5, 5]


# 6: no result backend.


@pytest.fixture(name="no_backend_worker", scope="module")
def fixture_no_backend_worker(tmp_path_factory) -> Iterator[Any]:
    """A prefork worker of two processes without a result backend, on the "no-backend" queue."""
    with running_worker(
        tmp_path_factory.mktemp("no-backend") / "worker.log",
        "no-backend",
        env={"CELERY_EVENTS_TEST_NO_RESULT_BACKEND": "1"},
        worker_args=("-P", "prefork", "-c", "2"),
        answers=_records,
    ) as process:
        yield process


def _records(queue: str) -> None:
    """Wait until the worker of ``queue`` records a value: it has started, with no backend."""
    marker = f"started-{uuid.uuid4().hex}"
    tasks.nobackend_record.apply_async(args=(marker,), queue=queue)
    wait_for(lambda: marker in tasks.recorded(), "the worker without a result backend to start")


@pytest.mark.parametrize("how", ["chain", "link"])
def test_join_without_a_result_backend_gets_the_holders_outcome_and_runs_no_second_body(
    no_backend_worker, how
):
    argument = uuid.uuid4().hex
    holder = tasks.nobackend_counted.apply_async(args=(argument,))
    wait_for(lambda: tasks.bodies(argument) == [1], "the holder's body to start")
    follower = tasks.nobackend_record.s()
    if how == "chain":
        chain(tasks.nobackend_counted.s(argument), follower).apply_async()
    else:
        tasks.nobackend_counted.apply_async(args=(argument,), link=follower)
    wait_for(
        lambda: _parked(tasks.nobackend_counted, holder.id, argument) == 1,
        "the joined call to be parked beside the holder",
    )
    tasks.open_gate(argument)

    wait_for(lambda: holder.id in tasks.recorded(), "the follower to get the holder's value")
    assert tasks.bodies(argument) == [1]  # the joined call ran no body of its own


# 7: a message delivered twice.


def test_second_delivery_of_a_running_message_never_runs_the_body(
    concurrent_worker, published, worker_events
):
    argument = uuid.uuid4().hex
    first = tasks.concurrent_counted.apply_async(args=(argument,))
    wait_for(lambda: tasks.bodies(argument) == [1], "the first delivery's body to start")

    _deliver_again(tasks.concurrent_counted, published[first.id], tasks.CONCURRENT_QUEUE)
    wait_for(
        lambda: _logged(first.id, "delivered again while an attempt of it runs"),
        "the second delivery to wait for the first",
    )
    tasks.open_gate(argument)

    assert first.get(timeout=30) == first.id
    wait_for(
        lambda: _logged(first.id, "the delivery it waited for ended its call"),
        "the second delivery to end",
    )
    assert tasks.bodies(argument) == [1]
    ends = [
        event["signal"]
        for event in worker_events(first.invocation_id)
        if event["signal"] in {"task_success", "task_failure"}
    ]
    assert ends == ["task_success"]  # one outcome


def test_stand_in_delivered_twice_completes_its_task_id_once(concurrent_worker, published):
    gate = uuid.uuid4().hex
    holder = tasks.concurrent_gated.apply_async(args=(gate, 3))
    wait_for(lambda: tasks.has_started(gate), "the holder's body to start")
    steps = chain(tasks.concurrent_gated.s(gate, 3), tasks.concurrent_record.s()).apply_async()
    member = steps.parent
    wait_for(lambda: member.id in published, "the stand-in to be published")

    _deliver_again(tasks.concurrent_gated, published[member.id], tasks.CONCURRENT_QUEUE)
    wait_for(
        lambda: _parked(tasks.concurrent_gated, holder.id, gate, 3) == 1,
        "the stand-in to be parked",
    )
    tasks.open_gate(gate)

    assert holder.get(timeout=30) == 3
    assert steps.get(timeout=30) is None
    wait_for(
        lambda: _logged(member.id, "was completed by another delivery of it"),
        "the second delivery to end",
    )
    assert tasks.recorded().count(3) == 1  # the chain's next step ran once


# 9: a Redis broker's visibility timeout delivers a running message again.


@pytest.mark.skipif(
    not hasattr(RedisChannel, "unacked_restore_interval"),
    reason="this kombu looks for messages past their visibility timeout every 100 s",
)
def test_message_delivered_again_by_the_visibility_timeout_never_runs_twice(tmp_path):
    argument = uuid.uuid4().hex
    with running_worker(
        tmp_path / "visibility.log",
        "visibility",
        env={"CELERY_EVENTS_TEST_VISIBILITY_TIMEOUT": "2"},
        worker_args=("-P", "prefork", "-c", "2"),
    ):
        result = tasks.visibility_counted.apply_async(args=(argument,))
        wait_for(lambda: tasks.bodies(argument) == [1], "the first delivery's body to start")
        wait_for(
            lambda: _logged(result.id, "delivered again while an attempt of it runs"),
            "the broker to deliver the message again",
        )
        tasks.open_gate(argument)

        assert result.get(timeout=30) == result.id
    assert tasks.bodies(argument) == [1]
