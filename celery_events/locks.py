"""Where the unique locks and ignore windows of tasks live.

A *lock store* answers three questions for :class:`~celery_events.task.DjangoTask`: may this call
be triggered (or is it ignored, or is the same call already held by another task id), release the
lock of a task that finished (and open its ignore window after a success), and who holds a lock
now. :func:`get_lock_store` picks the store for the cache named by the ``CACHE_NAME`` setting.

:class:`CacheLockStore` works on any Django cache through its public API. Its guarantees are
those of the cache: ``cache.add`` makes acquiring atomic on caches whose ``add`` is atomic
(Redis, memcached, the database cache; locmem within one process), but reading the holder and
deleting the lock are two operations, so a release is not owner-safe against a lock that expired
and was taken by another call in between.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from django.core.cache import caches

from .config import settings

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache

__all__ = [
    "Admission",
    "CacheLockStore",
    "LockContentionError",
    "LockStore",
    "Outcome",
    "get_lock_store",
]


class Outcome(enum.Enum):
    """What a call that asked the lock store for admission is to do."""

    TRIGGER = "triggered"
    """Publish (or run) the call: the lock, if any, is now held by its task id."""
    UNIQUE = "unique"
    """Join the call in progress: the lock is held by another task id."""
    IGNORED = "ignored"
    """Do nothing: the call succeeded within its ignore window."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The lock store's answer to a call: its outcome and the task id that holds the lock."""

    outcome: Outcome
    task_id: str | None
    """The call's own id when triggered, the holder's when unique, None when ignored."""


class LockStore(Protocol):
    """The interface between DjangoTask and the keys of unique and ignore-after-success tasks."""

    def admit(
        self,
        *,
        task_id: str,
        unique_key: str | None,
        lock_ttl: float | None,
        ignore_key: str | None,
    ) -> Admission:
        """Check the ignore window, then take the unique lock for ``task_id``.

        Args:
            task_id: the id the call will be published with.
            unique_key: the lock's key, or None for a task that is not unique.
            lock_ttl: seconds the lock lives if never released (stale_time_limit + any delay).
            ignore_key: the ignore window's key, or None for a task without one.
        """
        ...

    def release(
        self,
        *,
        task_id: str,
        unique_key: str | None,
        ignore_key: str | None,
        ignore_ttl: float | None,
    ) -> None:
        """Release ``unique_key`` if ``task_id`` holds it; open the ignore window if a key is given.

        Args:
            task_id: the finishing task's id; only the holder's release deletes the lock.
            unique_key: the lock's key, or None.
            ignore_key: the ignore window to open (after a success), or None.
            ignore_ttl: seconds the ignore window stays open.
        """
        ...

    def holder(self, unique_key: str) -> str | None:
        """Return the task id that holds ``unique_key``, or None when it is free."""
        ...


class CacheLockStore:
    """A lock store on any Django cache, through the cache's public API.

    Args:
        cache: the Django cache that keeps the keys.
    """

    #: How often ``admit`` retries ``cache.add`` when the holder vanished between the failed
    #: add and the read of the holder (the lock expired or was released in between).
    ADD_ATTEMPTS: Final = 3

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    def admit(
        self,
        *,
        task_id: str,
        unique_key: str | None,
        lock_ttl: float | None,
        ignore_key: str | None,
    ) -> Admission:
        """See :meth:`LockStore.admit`."""
        if ignore_key is not None and self.cache.get(ignore_key) is not None:
            return Admission(Outcome.IGNORED, None)
        if unique_key is None:
            return Admission(Outcome.TRIGGER, task_id)
        for _ in range(self.ADD_ATTEMPTS):
            if self.cache.add(unique_key, task_id, lock_ttl):
                return Admission(Outcome.TRIGGER, task_id)
            holder = self.cache.get(unique_key)
            if holder is not None:
                return Admission(Outcome.UNIQUE, holder)
        msg = (
            f"unique lock {unique_key!r} changed hands {self.ADD_ATTEMPTS} times while "
            f"task {task_id!r} tried to take it"
        )
        raise LockContentionError(msg)

    def release(
        self,
        *,
        task_id: str,
        unique_key: str | None,
        ignore_key: str | None,
        ignore_ttl: float | None,
    ) -> None:
        """See :meth:`LockStore.release`; not owner-safe against a lock taken in between."""
        if ignore_key is not None:
            self.cache.set(ignore_key, task_id, ignore_ttl)
        if unique_key is not None and self.cache.get(unique_key) == task_id:
            self.cache.delete(unique_key)

    def holder(self, unique_key: str) -> str | None:
        """See :meth:`LockStore.holder`."""
        holder: str | None = self.cache.get(unique_key)
        return holder


class LockContentionError(RuntimeError):
    """A unique lock changed hands faster than a caller could read its holder."""


def get_lock_store() -> LockStore:
    """Return the lock store for the cache named by the ``CACHE_NAME`` setting."""
    return CacheLockStore(caches[settings.CACHE_NAME])
