"""The Redis lock store: atomic under concurrency, one round trip a step, clear when Redis stops."""

from __future__ import annotations

import signal
import uuid

import pytest
from django.conf import settings as django_settings
from redis.crc import key_slot

from celery_events.locks import Admission, LockStoreUnavailableError, Outcome, get_lock_store
from tests import lock_race, tasks
from tests.conftest import wait_for
from tests.lock_helpers import (
    cluster_node,
    own_queue,
    published,
    redis_cache,
    throwaway_redis,
    use_cache,
)
from tests.redis_monitor import monitored

CALLERS = 32


def _key() -> str:
    return f"test-locks-redis|{uuid.uuid4()}"


@pytest.fixture(name="queue")
def fixture_queue(redis_client):
    with own_queue(redis_client) as name:
        yield name


@pytest.fixture(name="counted")
def fixture_counted(settings):
    """The lock store on a Redis of the test's own, and the Redis's URL."""
    with throwaway_redis() as (url, _):
        use_cache(settings, "counted", redis_cache(url))
        yield get_lock_store(), url


@pytest.fixture(name="stopped_cache")
def fixture_stopped_cache(settings):
    """CACHE_NAME names a cache whose redis-server the test started and killed."""
    with throwaway_redis() as (url, process):
        use_cache(settings, "stopped", redis_cache(url))
        get_lock_store().holder(_key())  # the store and its connection exist before the stop
        process.kill()
        process.wait()
        yield "stopped"


@pytest.mark.parametrize("ignore", [False, True], ids=["unique", "unique-and-ignore"])
def test_trigger_and_completion_each_take_one_round_trip(counted, ignore):
    store, url = counted
    unique_key, ignore_key = _key(), _key() if ignore else None
    # The first run of each script loads it on the server (NOSCRIPT, SCRIPT LOAD), once.
    store.admit(task_id="warm", unique_key=_key(), lock_ttl=60, ignore_key=ignore_key)
    store.release(task_id="warm", unique_key=_key(), ignore_key=ignore_key, ignore_ttl=60)

    with monitored(url) as on_trigger:
        store.admit(task_id="t", unique_key=unique_key, lock_ttl=60, ignore_key=ignore_key)
    with monitored(url) as on_completion:
        store.release(task_id="t", unique_key=unique_key, ignore_key=ignore_key, ignore_ttl=60)

    assert on_trigger.sent == ["EVALSHA"]
    assert on_completion.sent == ["EVALSHA"]


def test_lock_lives_for_its_time_to_live(redis_client):
    store, key = get_lock_store(), _key()

    store.admit(task_id="t", unique_key=key, lock_ttl=30, ignore_key=None)

    assert 0 < redis_client.pttl(store.binding.key(key)) <= 30_000


def test_keys_without_time_to_live_never_expire(redis_client):
    store, unique_key, ignore_key = get_lock_store(), _key(), _key()

    store.admit(task_id="t", unique_key=unique_key, lock_ttl=None, ignore_key=None)
    store.ignore(task_id="t", ignore_key=ignore_key, ignore_ttl=None, unique_key=unique_key)

    assert redis_client.pttl(store.binding.key(unique_key)) == -1
    assert redis_client.pttl(store.binding.key(ignore_key, beside=unique_key)) == -1


def test_late_finisher_keeps_the_newer_holders_lock():
    store, key = get_lock_store(), _key()
    store.admit(task_id="late", unique_key=key, lock_ttl=0.05, ignore_key=None)
    wait_for(lambda: store.holder(key) is None, "the first lock to expire")
    store.admit(task_id="newer", unique_key=key, lock_ttl=60, ignore_key=None)

    store.release(task_id="late", unique_key=key, ignore_key=None, ignore_ttl=None)

    assert store.holder(key) == "newer"


def test_key_prefix_keeps_two_projects_apart(settings):
    key = _key()
    use_cache(settings, "project-a", redis_cache(django_settings.REDIS_URL, prefix="a"))
    first = get_lock_store().admit(task_id="a", unique_key=key, lock_ttl=60, ignore_key=None)
    use_cache(settings, "project-b", redis_cache(django_settings.REDIS_URL, prefix="b"))
    second = get_lock_store().admit(task_id="b", unique_key=key, lock_ttl=60, ignore_key=None)

    assert (first, second) == (Admission(Outcome.TRIGGER, "a"), Admission(Outcome.TRIGGER, "b"))


@pytest.mark.parametrize("prefix", ["", "{project}"], ids=["plain-prefix", "hash-tag-prefix"])
def test_ignore_window_of_a_unique_call_is_in_the_hash_slot_of_its_lock(settings, prefix):
    use_cache(settings, "tagged", redis_cache(django_settings.REDIS_URL, prefix=prefix))
    binding = get_lock_store().binding
    unique_key, ignore_key = _key(), _key()

    lock = binding.key(unique_key).encode()
    window = binding.key(ignore_key, beside=unique_key).encode()

    assert key_slot(window) == key_slot(lock)
    assert lock == binding.make_key(unique_key).encode()  # the lock keeps the cache's plain key


def test_store_runs_unchanged_on_a_redis_cluster(settings, tmp_path):
    with cluster_node(str(tmp_path)) as port:
        use_cache(
            settings,
            "cluster",
            {
                "BACKEND": "tests.cluster_cache.RedisClusterCache",
                "LOCATION": f"redis://127.0.0.1:{port}",
                "KEY_PREFIX": django_settings.KEY_PREFIX,
            },
        )
        store = get_lock_store()
        unique_key, ignore_key = _key(), _key()

        first = store.admit(task_id="a", unique_key=unique_key, lock_ttl=60, ignore_key=ignore_key)
        second = store.admit(task_id="b", unique_key=unique_key, lock_ttl=60, ignore_key=ignore_key)
        store.release(task_id="a", unique_key=unique_key, ignore_key=ignore_key, ignore_ttl=60)
        third = store.admit(task_id="c", unique_key=unique_key, lock_ttl=60, ignore_key=ignore_key)

    assert [first.outcome, second.outcome, third.outcome] == [
        Outcome.TRIGGER,
        Outcome.UNIQUE,
        Outcome.IGNORED,
    ]


def test_concurrent_callers_in_separate_processes_publish_one_message(redis_client, queue):
    context = lock_race.forkserver()
    barrier, task_ids = context.Barrier(CALLERS), context.Queue()
    argument = uuid.uuid4().hex
    callers = [
        context.Process(target=lock_race.call_unique, args=(barrier, argument, queue, task_ids))
        for _ in range(CALLERS)
    ]
    for caller in callers:
        caller.start()
    got = [task_ids.get(timeout=lock_race.BARRIER_TIMEOUT) for _ in callers]
    for caller in callers:
        caller.join()

    messages = published(redis_client, queue)
    assert len(messages) == 1
    assert got == messages * CALLERS
    assert [caller.exitcode for caller in callers] == [0] * CALLERS


@pytest.mark.parametrize(
    ("operation", "call"),
    [
        (
            "admit task",
            lambda s: s.admit(task_id="t", unique_key=_key(), lock_ttl=1, ignore_key=None),
        ),
        (
            "release task",
            lambda s: s.release(task_id="t", unique_key=_key(), ignore_key=None, ignore_ttl=1),
        ),
        (
            "open ignore window",
            lambda s: s.ignore(task_id="t", ignore_key=_key(), ignore_ttl=1, unique_key=None),
        ),
        ("read the holder", lambda s: s.holder(_key())),
    ],
    ids=["admit", "release", "ignore", "holder"],
)
def test_stopped_redis_raises_unavailable_naming_cache_and_operation(
    stopped_cache, operation, call
):
    with pytest.raises(LockStoreUnavailableError, match=f"cache 'stopped' could not {operation}"):
        call(get_lock_store())


def test_hung_redis_raises_unavailable_after_the_cache_socket_timeout(settings):
    with throwaway_redis() as (url, process):
        use_cache(settings, "hung", redis_cache(url, socket_timeout=0.2))
        process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(LockStoreUnavailableError, match="Timeout") as raised:
                get_lock_store().admit(task_id="t", unique_key=_key(), lock_ttl=60, ignore_key=None)
        finally:
            process.send_signal(signal.SIGCONT)

    assert "cache 'hung' could not admit task 't'" in str(raised.value)


@pytest.mark.parametrize(
    "task", [tasks.locks_unique, tasks.locks_ignored_briefly], ids=lambda t: t.name
)
def test_stopped_redis_fails_calls_of_unique_and_ignore_tasks(
    stopped_cache, redis_client, queue, task
):
    with pytest.raises(LockStoreUnavailableError, match="cache 'stopped' could not admit"):
        task.apply_async(args=("x",), queue=queue)

    assert published(redis_client, queue) == []


def test_stopped_redis_leaves_plain_tasks_publishing(stopped_cache, redis_client, queue):
    result = tasks.locks_plain.apply_async(args=("x",), queue=queue)

    assert published(redis_client, queue) == [result.id]
