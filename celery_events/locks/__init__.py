"""Where the unique locks and ignore windows of tasks live.

A *lock store* answers three questions for :class:`~celery_events.task.DjangoTask`: may this call
be triggered (or is it ignored, or is the same call already held by another task id), release the
lock of a task that finished (and open its ignore window after a success), and who holds a lock
now. :func:`get_lock_store` picks the store for the cache named by the ``CACHE_NAME`` setting:

- :class:`RedisLockStore` when that cache is Django's ``RedisCache`` or django-redis's: atomic,
  owner-safe, one round trip to Redis per trigger and per completion; an unreachable Redis raises
  :class:`LockStoreUnavailableError`.
- :class:`CacheLockStore` for any other cache, with that cache's weaker guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from django.conf import settings as django_settings
from django.core.cache import InvalidCacheBackendError, caches

from celery_events.config import SETTING_PREFIX, settings

from .base import (
    Admission,
    Claim,
    LockStore,
    LockStoreUnavailableError,
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
    "LockContentionError",
    "LockStore",
    "LockStoreUnavailableError",
    "Outcome",
    "RedisLockStore",
    "UnreadableLockError",
    "get_lock_store",
]

# One store per cache object: ``caches[alias]`` gives each thread its own cache object (and
# client), and a new one after ``CACHES`` changes; a store goes away with its cache.
_stores: WeakKeyDictionary[BaseCache, LockStore] = WeakKeyDictionary()


def _new_lock_store(cache: BaseCache, cache_name: str) -> LockStore:
    """Return a lock store on ``cache``: the Redis store when it lives in Redis."""
    binding = redis_binding(cache, cache_name)
    return CacheLockStore(cache) if binding is None else RedisLockStore(binding)


def get_lock_store() -> LockStore:
    """Return the lock store of the cache named by the ``CACHE_NAME`` setting.

    Cheap after the first call in a thread: the store is kept beside its cache object.

    Raises:
        django.core.cache.InvalidCacheBackendError: ``CACHE_NAME`` names no cache of
            ``CACHES`` (the system check ``celery_events.E003`` reports it at start-up).
        LockStoreUnavailableError: the cache's client could not be made because its Redis
            cannot be reached (a Redis Cluster, whose client connects as it is made).
    """
    cache_name = settings.CACHE_NAME
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
        store = _stores[cache] = _new_lock_store(cache, cache_name)
    return store
