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
