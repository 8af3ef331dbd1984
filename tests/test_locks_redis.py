"""The Redis lock store: atomic under concurrency, one round trip a step, clear when Redis stops.

It runs unchanged on a Redis Cluster and on a Sentinel-managed primary, through a failover.
"""

from __future__ import annotations

import signal
import uuid
from datetime import datetime, timezone

import pytest
from django.conf import settings as django_settings
from redis.crc import key_slot
from redis.exceptions import ClusterDownError

from celery_events.locks import (
    Admission,
    Claim,
    Lease,
    LockStoreUnavailableError,
    Outcome,
    RedisLockStore,
    get_lock_store,
)
from celery_events.locks.beat_lock import BeatLock
from tests import lock_race, tasks
from tests.conftest import wait_for
from tests.lock_helpers import (
    own_queue,
    published,
    redis_cache,
    throwaway_redis,
    use_cache,
)
from tests.redis_monitor import monitored
from tests.redis_topologies import (
    CLUSTER_BACKEND,
    SERVICE_NAME,
    TOPOLOGIES,
    Server,
    cluster_cache,
    cluster_topology,
    sentinel_topology,
    topology_cache,
)

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


@pytest.fixture(name="topology_store", params=TOPOLOGIES)
def fixture_topology_store(request, settings):
    """The lock store on the session's Redis Cluster, then on its Sentinel-managed primary."""
    use_cache(settings, request.param, topology_cache(request, request.param))
    return get_lock_store()


def test_claim_held_and_discard_hold_on_every_topology(topology_store):
    store, unique_key, ignore_key = topology_store, _key(), _key()
    first = store.claim(
        task_id="a", unique_key=unique_key, lease=_lease(unique_key, "a"), task_name="reports.daily"
    )
    second = store.claim(
        task_id="b", unique_key=unique_key, lease=_lease(unique_key, "b"), task_name="reports.daily"
    )
    store.ignore(
        task_id="a",
        ignore_key=ignore_key,
        ignore_ttl=60,
        unique_key=unique_key,
        task_name="reports.daily",
    )

    held = store.held("reports.daily").keys
    discarded = store.discard(
        task_id="a", kind="unique", key=unique_key, beside=None, task_name="reports.daily"
    )

    assert (first, second) == (Claim("a", taken=True), Claim("a", taken=False))
    assert sorted((key.kind, key.key, key.task_id) for key in held) == [
        ("ignore", ignore_key, "a"),
        ("unique", unique_key, "a"),
    ]
    assert discarded
    assert [key.kind for key in store.held("reports.daily").keys] == ["ignore"]


def test_held_lists_the_keys_of_every_node_of_a_cluster(request, settings, redis_cluster):
    use_cache(settings, "redis-cluster", topology_cache(request, "redis-cluster"))
    store = get_lock_store()
    keys = [_key_on(store, node) for node in redis_cluster for _ in range(2)]
    for key in keys:
        store.admit(task_id="t", unique_key=key, lock_ttl=60, ignore_key=None, task_name="spread")

    held = store.held("spread").keys

    assert sorted(key.key for key in held) == sorted(keys)  # SCAN visited every primary


def test_held_page_walks_every_topology_page_by_page(topology_store, keep_arguments):
    task_name = f"paged.{_key()}"
    keys = [_key() for _ in range(30)]
    for n, key in enumerate(keys):
        topology_store.admit(
            task_id=f"t{n}",
            unique_key=key,
            lock_ttl=60,
            ignore_key=None,
            task_name=task_name,
            arguments=([n], {}),
        )

    pages, cursor = [], None
    while True:
        page = topology_store.held_page(cursor, task_name=task_name, size=4)
        pages.append(page.keys)
        if page.cursor is None:
            break
        cursor = page.cursor

    found = [key for page in pages for key in page]
    assert sorted(key.key for key in found) == sorted(keys)  # every primary, each key once
    assert {key.task_id: key.args for key in found} == {f"t{n}": [n] for n in range(30)}
    assert len(pages) > 1


def test_a_lock_claimed_again_where_an_attempt_starts_keeps_its_call_in_the_index(
    topology_store, keep_arguments
):
    # As a redelivered attempt whose lock expired takes it again: Celery hands its keyword
    # arguments as None when the call had none.
    task_name, unique_key = f"claimed.{_key()}", _key()
    topology_store.claim(
        task_id="again",
        unique_key=unique_key,
        lease=_lease(unique_key, "again"),
        task_name=task_name,
        arguments=(["order-1"], None),
    )

    [held] = topology_store.held(task_name).keys

    assert (held.task_id, held.args, held.kwargs) == ("again", ["order-1"], {})


def test_held_page_refuses_a_cursor_it_did_not_give_on_every_topology(topology_store):
    with pytest.raises(ValueError, match="not a SCAN cursor"):
        topology_store.held_page("nonsense")


def test_held_page_search_reads_only_the_keys_of_matching_entries(counted, keep_arguments):
    store, url = counted
    for n in range(50):
        store.admit(
            task_id=f"holder-{n}",
            unique_key=_key(),
            lock_ttl=60,
            ignore_key=None,
            task_name="searched",
            arguments=([f"order-{n}"], {}),
        )

    with monitored(url) as commands:
        by_argument = store.held_page(search="ORDER-7", size=100)
        by_holder = store.held_page(search="holder-13", size=100)
        nothing = store.held_page(search="no such call", size=100)

    assert [key.args for key in by_argument.keys] == [["order-7"]]
    assert [key.task_id for key in by_holder.keys] == ["holder-13"]
    assert nothing.keys == []
    # The keys (GET and PTTL) of the two matches only; each SCAN step's entries in one MGET.
    assert commands.sent.count("PTTL") == 2
    assert commands.sent.count("GET") == 2
    assert set(commands.sent) == {"SCAN", "MGET", "GET", "PTTL"}


def test_cluster_node_that_dies_fails_the_calls_of_its_slots_then_of_all(settings):
    with cluster_topology() as nodes:
        use_cache(settings, "dying-cluster", cluster_cache(nodes))
        store = get_lock_store()
        dead, live_nodes = nodes[0], nodes[1:]
        on_dead, on_live = _key_on(store, dead), _key_on(store, nodes[1])
        store.admit(task_id="t", unique_key=on_live, lock_ttl=60, ignore_key=None)
        # The live nodes would mark the dead one failed within their cluster-node-timeout:
        # lengthened, they wait for the test, however long the client spends on its retries
        # (redis-py 8.2 spaces them by its backoff, about 4 s in all).
        _set_node_timeout(live_nodes, milliseconds=600_000)

        dead.kill()
        with pytest.raises(LockStoreUnavailableError, match="Connection refused"):
            store.admit(task_id="t", unique_key=on_dead, lock_ttl=60, ignore_key=None)
        holder_while_cluster_ok = store.holder(on_live)
        _set_node_timeout(live_nodes, milliseconds=500)
        with nodes[1].client() as live:
            wait_for(
                lambda: live.cluster("INFO")["cluster_state"] == "fail",
                "the live nodes to see the cluster fail",
            )
        with pytest.raises(LockStoreUnavailableError, match="could not read the holder") as down:
            store.holder(on_live)

    assert holder_while_cluster_ok == "t"
    # Every slot must be served (cluster-require-full-coverage): the live nodes refuse too.
    assert isinstance(down.value.__cause__, ClusterDownError)


def _set_node_timeout(nodes: list[Server], *, milliseconds: int) -> None:
    """Set how long ``nodes`` wait before they mark an unanswering node as failing."""
    for node in nodes:
        with node.client() as client:
            client.config_set("cluster-node-timeout", milliseconds)


def test_cluster_that_cannot_be_reached_fails_at_the_first_call(settings):
    # Nothing listens on port 1: the client's question for the slot map is refused at once.
    config = {"BACKEND": CLUSTER_BACKEND, "LOCATION": "redis://127.0.0.1:1"}
    use_cache(settings, "unreachable-cluster", config)

    with pytest.raises(LockStoreUnavailableError, match="'unreachable-cluster' could not make"):
        get_lock_store()


def _lease(unique_key: str, task_id: str) -> Lease:
    """A lease of a minute for an attempt of ``task_id``."""
    return Lease(unique_key=unique_key, task_id=task_id, token=f"{task_id}-attempt", ttl=60)


def _key_on(store: RedisLockStore, node: Server) -> str:
    """Return a new unique key whose lock lives on cluster node ``node``."""
    cluster = store.binding.client
    while True:
        key = _key()
        if cluster.get_node_from_key(store.binding.key(key)).port == node.port:
            return key


def test_beat_lock_admits_one_beat_and_hands_its_runs_over_on_every_topology(topology_store):
    name, when = _key(), datetime(2026, 1, 1, 9, 30, tzinfo=timezone.utc)
    holder = BeatLock(topology_store.binding, name, timeout=60)
    standby = BeatLock(topology_store.binding, name, timeout=60)

    assert holder.take() == {}
    assert standby.take() is None
    assert holder.record_run("nightly", when, last_runs_ttl=86400)
    assert holder.renew(last_runs_ttl=86400)
    assert not standby.record_run("nightly", when, last_runs_ttl=86400)
    assert holder.release()
    assert standby.take() == {"nightly": when}
    assert not holder.renew(last_runs_ttl=86400)
    assert standby.release()


def test_sentinel_failover_keeps_a_replicated_lock_and_fails_calls_clearly_meanwhile(settings):
    with sentinel_topology() as topology:
        use_cache(settings, "failover", topology.cache())
        store, key = get_lock_store(), _key()
        store.admit(task_id="holder", unique_key=key, lock_ttl=60, ignore_key=None)
        with topology.primary.client() as primary:
            # The lock is on the replica before the primary dies; WAIT is the test's, not the
            # store's (see docs/locks.md, "Redis Sentinel").
            assert primary.wait(1, 10_000) == 1

        # The sentinel waits a minute before it calls the primary down, so that a call surely
        # meets the dead primary; then it is told to wait half a second, and fails over alone.
        # (Stopping the sentinel instead would put it in TILT mode, which pauses failovers.)
        with topology.sentinel.client() as sentinel:
            sentinel.sentinel_set(SERVICE_NAME, "down-after-milliseconds", 60_000)
            topology.primary.kill()
            with pytest.raises(LockStoreUnavailableError) as during:
                store.admit(task_id="joiner", unique_key=key, lock_ttl=60, ignore_key=None)
            sentinel.sentinel_set(SERVICE_NAME, "down-after-milliseconds", 500)
        unavailable: list[LockStoreUnavailableError] = []

        def admitted() -> Admission | None:
            try:
                return store.admit(task_id="joiner", unique_key=key, lock_ttl=60, ignore_key=None)
            except LockStoreUnavailableError as exc:
                unavailable.append(exc)
                return None

        admission = wait_for(admitted, "a call to proceed on the promoted replica", timeout=90)
        promoted = topology.primary_port()
        store.release(task_id="holder", unique_key=key, ignore_key=None, ignore_ttl=None)
        after_release = store.admit(task_id="next", unique_key=key, lock_ttl=60, ignore_key=None)

    assert "cache 'failover' could not admit task 'joiner'" in str(during.value)
    assert all("cache 'failover' could not admit task 'joiner'" in str(e) for e in unavailable)
    assert promoted == topology.replica.port
    assert admission == Admission(Outcome.UNIQUE, "holder")
    assert after_release == Admission(Outcome.TRIGGER, "next")


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
