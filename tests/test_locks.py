"""The lock stores behind DjangoTask: one set of semantics on every cache, the store per cache."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.conf import settings as django_settings
from django.core.cache import InvalidCacheBackendError, caches
from django.test import override_settings

from celery_events.locks import (
    Admission,
    CacheLockStore,
    Claim,
    Lease,
    Look,
    Outcome,
    RedisLockStore,
    get_lock_store,
)
from tests import tasks
from tests.lock_helpers import DJANGO_REDIS_PACKAGE_CACHE, redis_cache, use_cache
from tests.redis_topologies import TOPOLOGIES, topology_cache

CACHES = {
    "django-redis-cache": redis_cache(django_settings.REDIS_URL),
    "django-redis-package": {
        "BACKEND": DJANGO_REDIS_PACKAGE_CACHE,
        "LOCATION": django_settings.REDIS_URL,
        "KEY_PREFIX": django_settings.KEY_PREFIX,
    },
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}


@pytest.fixture(name="cache_name", params=sorted([*CACHES, *TOPOLOGIES]))
def fixture_cache_name(request, settings):
    """Point CACHE_NAME at each kind of cache in turn, and at a cluster and Sentinel's primary."""
    alias = request.param
    config = CACHES[alias] if alias in CACHES else topology_cache(request, alias)
    use_cache(settings, alias, config)
    return alias


@pytest.fixture(name="store")
def fixture_store(cache_name):
    return get_lock_store()


def _key() -> str:
    return f"test-locks|{uuid.uuid4()}"


@pytest.mark.parametrize(
    ("cache_name", "store_class"),
    [
        ("django-redis-cache", RedisLockStore),
        ("django-redis-package", RedisLockStore),
        ("locmem", CacheLockStore),
        ("redis-cluster", RedisLockStore),
        ("redis-sentinel", RedisLockStore),
    ],
    indirect=["cache_name"],
)
def test_get_lock_store_picks_the_redis_store_for_redis_caches(cache_name, store_class):
    assert type(get_lock_store()) is store_class


def test_get_lock_store_falls_back_to_cache_store_for_sharded_django_redis(settings):
    use_cache(
        settings,
        "sharded",
        {
            "BACKEND": DJANGO_REDIS_PACKAGE_CACHE,
            "LOCATION": [django_settings.REDIS_URL],
            "KEY_PREFIX": django_settings.KEY_PREFIX,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.ShardClient"},
        },
    )

    assert type(get_lock_store()) is CacheLockStore


def test_get_lock_store_keeps_one_redis_store_for_every_thread_and_one_other_per_thread(
    store, cache_name
):
    in_thread = []
    thread = threading.Thread(target=lambda: in_thread.append(get_lock_store()))
    thread.start()
    thread.join()

    assert get_lock_store() is store
    # Django gives each thread its own cache object: a Redis store shares its client's
    # connection pool with every thread instead; any other keeps to its thread's cache.
    assert (in_thread[0] is store) == isinstance(store, RedisLockStore)


def test_get_lock_store_makes_a_new_redis_store_when_caches_change(settings):
    use_cache(settings, "first", redis_cache(django_settings.REDIS_URL))
    first = get_lock_store()

    use_cache(settings, "first", redis_cache(django_settings.REDIS_URL, prefix="other:"))

    assert get_lock_store() is not first
    assert get_lock_store().binding.make_key("k").startswith(f"{django_settings.KEY_PREFIX}other:")


def test_get_lock_store_follows_cache_name_changes(store, settings):
    settings.DJANGO_CELERY_EXTENSIONS_CACHE_NAME = "default"

    assert get_lock_store() is not store
    assert get_lock_store() is get_lock_store()


def test_admit_takes_a_free_lock_for_the_caller(store):
    key = _key()

    admission = store.admit(task_id="first", unique_key=key, lock_ttl=60, ignore_key=None)

    assert admission == Admission(Outcome.TRIGGER, "first")
    assert store.holder(key) == "first"


def test_admit_of_held_lock_answers_unique_with_the_holder(store):
    key = _key()
    store.admit(task_id="first", unique_key=key, lock_ttl=60, ignore_key=None)

    admission = store.admit(task_id="second", unique_key=key, lock_ttl=60, ignore_key=None)

    assert admission == Admission(Outcome.UNIQUE, "first")
    assert store.holder(key) == "first"


def test_admit_without_keys_triggers(store):
    assert store.admit(task_id="t", unique_key=None, lock_ttl=None, ignore_key=None) == Admission(
        Outcome.TRIGGER, "t"
    )


def _lease(key: str, task_id: str, attempt: str = "first") -> Lease:
    return Lease(unique_key=key, task_id=task_id, token=f"{task_id}-{attempt}", ttl=60)


def test_claim_takes_the_lease_and_a_second_delivery_finds_it_running(store):
    key = _key()
    store.admit(task_id="call", unique_key=key, lock_ttl=60, ignore_key=None)

    first = store.claim(task_id="call", unique_key=key, lease=_lease(key, "call"))
    again = store.claim(task_id="call", unique_key=key, lease=_lease(key, "call", "second"))
    other = store.claim(task_id="other", unique_key=key, lease=_lease(key, "other"))

    assert first == Claim("call", taken=False)
    assert again == Claim("call", taken=False, elsewhere=True)
    assert other == Claim("call", taken=False)


def test_claim_of_a_free_lock_takes_it(store):
    key = _key()

    assert store.claim(task_id="late", unique_key=key, lease=_lease(key, "late")) == Claim(
        "late", taken=True
    )
    assert store.holder(key) == "late"


def test_claim_of_a_task_id_that_left_its_outcome_says_the_call_ended(store):
    key = _key()
    store.claim(task_id="call", unique_key=key, lease=_lease(key, "call"))
    store.release(
        task_id="call",
        unique_key=key,
        ignore_key=None,
        ignore_ttl=None,
        outcome=b"done",
        outcome_ttl=60,
    )

    late = store.claim(task_id="call", unique_key=key, lease=_lease(key, "call", "late"))

    assert late == Claim("call", taken=False, ended=True)
    assert store.holder(key) is None


def test_renew_keeps_the_leases_held_and_reports_those_lost(store):
    kept, lost = _key(), _key()
    store.claim(task_id="kept", unique_key=kept, lease=_lease(kept, "kept"))
    store.claim(task_id="lost", unique_key=lost, lease=_lease(lost, "lost"))
    store.release(task_id="lost", unique_key=lost, ignore_key=None, ignore_ttl=None)
    store.admit(task_id="newer", unique_key=lost, lock_ttl=60, ignore_key=None)

    renewed = store.renew([_lease(kept, "kept"), _lease(lost, "lost")])

    assert renewed == [True, False]
    assert (store.holder(kept), store.holder(lost)) == ("kept", "newer")


def test_step_out_leaves_the_lock_to_the_next_attempt(store):
    key = _key()
    store.claim(task_id="call", unique_key=key, lease=_lease(key, "call"))

    store.step_out(_lease(key, "call"), 60)
    retry = store.claim(task_id="call", unique_key=key, lease=_lease(key, "call", "retry"))

    assert retry == Claim("call", taken=False)  # held for it, and no lease of another attempt


def test_release_leaves_the_outcome_and_hands_back_the_parked_stand_ins(store):
    key = _key()
    store.claim(task_id="holder", unique_key=key, lease=_lease(key, "holder"))
    running = store.look(unique_key=key, task_id="holder", waiter=b"stand-in", waiter_ttl=60)

    woken = store.release(
        task_id="holder",
        unique_key=key,
        ignore_key=None,
        ignore_ttl=None,
        outcome=b"its outcome",
        outcome_ttl=60,
    )
    ended = store.look(unique_key=key, task_id="holder", waiter=b"too late", waiter_ttl=60)

    assert running == Look(None, "holder")
    assert woken == [b"stand-in"]
    assert ended == Look(b"its outcome", None)
    assert store.holder(key) is None


def test_look_at_a_call_that_left_no_outcome_tells_who_holds_the_lock_now(store):
    key = _key()
    store.admit(task_id="newer", unique_key=key, lock_ttl=60, ignore_key=None)

    moved = store.look(unique_key=key, task_id="vanished", waiter=b"stand-in", waiter_ttl=60)
    store.release(task_id="newer", unique_key=key, ignore_key=None, ignore_ttl=None)
    free = store.look(unique_key=key, task_id="vanished", waiter=None, waiter_ttl=60)

    assert (moved, free) == (Look(None, "newer"), Look(None, None))


def test_complete_once_completes_a_stand_in_once(store):
    key = _key()

    first = store.complete_once(unique_key=key, task_id="stand-in", ttl=60)
    second = store.complete_once(unique_key=key, task_id="stand-in", ttl=60)

    assert (first, second) == (True, False)


def test_release_by_another_task_keeps_the_lock(store):
    key = _key()
    store.admit(task_id="holder", unique_key=key, lock_ttl=60, ignore_key=None)

    store.release(task_id="late", unique_key=key, ignore_key=None, ignore_ttl=None)

    assert store.holder(key) == "holder"


def test_release_by_the_holder_frees_the_lock(store):
    key = _key()
    store.admit(task_id="holder", unique_key=key, lock_ttl=60, ignore_key=None)

    store.release(task_id="holder", unique_key=key, ignore_key=None, ignore_ttl=None)

    assert store.holder(key) is None
    assert store.admit(task_id="next", unique_key=key, lock_ttl=60, ignore_key=None) == (
        Admission(Outcome.TRIGGER, "next")
    )


def test_release_after_success_opens_the_ignore_window(store):
    unique_key, ignore_key = _key(), _key()
    store.admit(task_id="holder", unique_key=unique_key, lock_ttl=60, ignore_key=ignore_key)

    store.release(task_id="holder", unique_key=unique_key, ignore_key=ignore_key, ignore_ttl=60)

    assert store.holder(unique_key) is None
    admission = store.admit(
        task_id="next", unique_key=unique_key, lock_ttl=60, ignore_key=ignore_key
    )
    assert admission == Admission(Outcome.IGNORED, None)
    assert store.holder(unique_key) is None


def test_ignore_opens_the_window_and_keeps_the_lock(store):
    unique_key, ignore_key = _key(), _key()
    store.admit(task_id="holder", unique_key=unique_key, lock_ttl=60, ignore_key=ignore_key)

    store.ignore(task_id="holder", ignore_key=ignore_key, ignore_ttl=60, unique_key=unique_key)

    assert store.holder(unique_key) == "holder"
    store.release(task_id="holder", unique_key=unique_key, ignore_key=None, ignore_ttl=None)
    admission = store.admit(
        task_id="next", unique_key=unique_key, lock_ttl=60, ignore_key=ignore_key
    )
    assert admission.outcome is Outcome.IGNORED


def test_ignore_window_of_a_task_that_is_not_unique_is_seen_by_admit(store):
    ignore_key = _key()

    store.ignore(task_id="done", ignore_key=ignore_key, ignore_ttl=60, unique_key=None)

    admission = store.admit(task_id="next", unique_key=None, lock_ttl=None, ignore_key=ignore_key)
    assert admission == Admission(Outcome.IGNORED, None)


@pytest.mark.parametrize(
    "cache_name",
    ["django-redis-cache", "django-redis-package", *TOPOLOGIES],
    indirect=True,
)
def test_redis_store_values_are_what_the_cache_api_reads(store, cache_name):
    """A lock taken by the Redis store reads as the old library's (``cache.add``) did, both ways."""
    cache = caches[cache_name]
    cache_store = CacheLockStore(cache)
    ours, theirs = _key(), _key()

    store.admit(task_id="ours", unique_key=ours, lock_ttl=60, ignore_key=None)
    cache_store.admit(task_id="theirs", unique_key=theirs, lock_ttl=60, ignore_key=None)

    assert cache.get(ours) == "ours"
    assert store.holder(theirs) == "theirs"
    assert cache_store.admit(task_id="x", unique_key=ours, lock_ttl=60, ignore_key=None) == (
        Admission(Outcome.UNIQUE, "ours")
    )
    store.release(task_id="theirs", unique_key=theirs, ignore_key=None, ignore_ttl=None)
    assert cache.get(theirs) is None


@override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="missing")
def test_cache_name_that_names_no_cache_is_named_at_the_first_call():
    with pytest.raises(InvalidCacheBackendError, match=r"CACHE_NAME is 'missing', which names no"):
        tasks.caller_unique.apply_async(args=(1,))
