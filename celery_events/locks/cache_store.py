"""The lock store for any Django cache, through the cache's public API.

Its guarantees are those of the cache: ``cache.add`` makes acquiring atomic on caches whose
``add`` is atomic (memcached, the database cache; locmem within one process), but the ignore
check and the acquire are separate operations, and so are reading the holder and deleting the
lock. A release is therefore not owner-safe against a lock that expired and was taken by another
call in between, and a call that found no ignore window just before a success opened it may still
take the lock that success then releases, and run once more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .base import Admission, Claim, Outcome

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache

    from .base import CallArguments

__all__ = ["CacheLockStore", "LockContentionError"]


class LockContentionError(RuntimeError):
    """A unique lock changed hands faster than a caller could read its holder."""


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
        task_name: str | None = None,
        arguments: CallArguments | None = None,
    ) -> Admission:
        """See :meth:`LockStore.admit`.

        Raises:
            LockContentionError: the lock changed hands ``ADD_ATTEMPTS`` times in a row.
        """
        if ignore_key is not None and self.cache.get(ignore_key) is not None:
            return Admission(Outcome.IGNORED, None)
        if unique_key is None:
            return Admission(Outcome.TRIGGER, task_id)
        claim = self.claim(task_id=task_id, unique_key=unique_key, lock_ttl=lock_ttl)
        if claim.holder == task_id:
            return Admission(Outcome.TRIGGER, task_id)
        return Admission(Outcome.UNIQUE, claim.holder)

    def claim(
        self,
        *,
        task_id: str,
        unique_key: str,
        lock_ttl: float | None,
        task_name: str | None = None,
        arguments: CallArguments | None = None,
    ) -> Claim:
        """See :meth:`LockStore.claim`: ``cache.add``, then a read of the holder.

        Raises:
            LockContentionError: the lock changed hands ``ADD_ATTEMPTS`` times in a row.
        """
        for _ in range(self.ADD_ATTEMPTS):
            if self.cache.add(unique_key, task_id, lock_ttl):
                return Claim(task_id, taken=True)
            holder = self.cache.get(unique_key)
            if holder is not None:
                return Claim(holder, taken=False)
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
        task_name: str | None = None,
        arguments: CallArguments | None = None,
    ) -> None:
        """See :meth:`LockStore.release`; not owner-safe against a lock taken in between."""
        if ignore_key is not None:
            self.cache.set(ignore_key, task_id, ignore_ttl)
        if unique_key is not None and self.cache.get(unique_key) == task_id:
            self.cache.delete(unique_key)

    def ignore(
        self,
        *,
        task_id: str,
        ignore_key: str,
        ignore_ttl: float | None,
        unique_key: str | None,
        task_name: str | None = None,
        arguments: CallArguments | None = None,
    ) -> None:
        """See :meth:`LockStore.ignore`."""
        self.cache.set(ignore_key, task_id, ignore_ttl)

    def holder(self, unique_key: str) -> str | None:
        """See :meth:`LockStore.holder`."""
        holder: str | None = self.cache.get(unique_key)
        return holder
