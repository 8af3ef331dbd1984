"""Where the unique locks and ignore windows of tasks live.

A *lock store* answers three questions for :class:`~celery_events.task.DjangoTask`: may this call
be triggered (or is it ignored, or is the same call already held by another task id), release the
lock of a task that finished (and open its ignore window after a success), and who holds a lock
now. :func:`get_lock_store` picks the store for the cache named by the ``CACHE_NAME`` setting,
and :func:`release_lock` frees the lock of a message whose task cannot (lost, revoked, dropped):

- :class:`RedisLockStore` when that cache is Django's ``RedisCache`` or django-redis's: atomic,
  owner-safe, one round trip to Redis per trigger and per completion; an unreachable Redis raises
  :class:`LockStoreUnavailableError`.
- :class:`CacheLockStore` for any other cache, with that cache's weaker guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from django.conf import settings as django_settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.signals import setting_changed

from celery_events.config import SETTING_PREFIX, settings

from .base import (
    Admission,
    Claim,
    Lease,
    LockStore,
    LockStoreUnavailableError,
    Look,
    Outcome,
    UnreadableLockError,
)
from .cache_store import CacheLockStore, LockContentionError
from .redis_cache import redis_binding
from .redis_store import RedisLockStore

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache

__all__ = [
    "Admission",
    "CacheLockStore",
    "Claim",
    "Lease",
    "LockContentionError",
    "LockStore",
    "LockStoreUnavailableError",
    "Look",
    "Outcome",
    "RedisLockStore",
    "UnreadableLockError",
    "get_lock_store",
    "release_lock",
]

# One Redis store per cache alias, for every thread: its client's connection pool is
# thread-safe, and Django's ``caches[alias]`` gives each thread (each request of a server that
# starts a thread per request, each request of an ASGI server) a cache object of its own, whose
# client would make a connection pool of its own, and so a connection per request. Forgotten
# when ``CACHES`` changes.
_redis_stores: dict[str, RedisLockStore] = {}

# Any other store, one per cache object (their clients are not all thread-safe: pymemcache's);
# a store goes away with its cache.
_stores: WeakKeyDictionary[BaseCache, LockStore] = WeakKeyDictionary()


def _new_lock_store(cache: BaseCache, cache_name: str) -> LockStore:
    """Return a lock store on ``cache``: the Redis store when it lives in Redis."""
    binding = redis_binding(cache, cache_name)
    return CacheLockStore(cache) if binding is None else RedisLockStore(binding)


def get_lock_store() -> LockStore:
    """Return the lock store of the cache named by the ``CACHE_NAME`` setting.

    Cheap after the first call: a Redis store is kept for the process, with its client and
    connection pool, until ``CACHES`` changes; another store is kept beside its cache object.

    Raises:
        django.core.cache.InvalidCacheBackendError: ``CACHE_NAME`` names no cache of
            ``CACHES`` (the system check ``celery_events.E003`` reports it at start-up).
        LockStoreUnavailableError: the cache's client could not be made because its Redis
            cannot be reached (a Redis Cluster, whose client connects as it is made).
    """
    cache_name = settings.CACHE_NAME
    redis_store = _redis_stores.get(cache_name)
    if redis_store is not None:
        return redis_store
    try:
        cache = caches[cache_name]
    except InvalidCacheBackendError as exc:
        msg = (
            f"{SETTING_PREFIX}CACHE_NAME is {cache_name!r}, which names no cache of CACHES "
            f"({', '.join(django_settings.CACHES)})"
        )
        raise InvalidCacheBackendError(msg) from exc
    store = _stores.get(cache)
    if store is None:
        store = _new_lock_store(cache, cache_name)
        if isinstance(store, RedisLockStore):
            _redis_stores[cache_name] = store
        else:
            _stores[cache] = store
    return store


def _forget_redis_stores(*, setting: str, **_: Any) -> None:
    if setting == "CACHES":
        _redis_stores.clear()


setting_changed.connect(_forget_redis_stores, dispatch_uid="celery_events.locks.redis_stores")


def release_lock(task_id: object, unique_key: object, task_name: str | None = None) -> None:
    """Release ``unique_key`` if ``task_id`` holds it; do nothing unless both are strings.

    Args:
        task_id: the message's task id, as its headers or request give it.
        unique_key: the lock key its headers carry (None for a task that is not unique).
        task_name: the task's name, to delete the lock's index entry with it.

    Raises:
        LockStoreUnavailableError: the lock store's Redis could not be reached.
    """
    if isinstance(task_id, str) and isinstance(unique_key, str):
        get_lock_store().release(
            task_id=task_id,
            unique_key=unique_key,
            ignore_key=None,
            ignore_ttl=None,
            task_name=task_name,
        )
