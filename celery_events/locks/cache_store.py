"""The lock store for any Django cache, through the cache's public API.

Its guarantees are those of the cache: ``cache.add`` makes acquiring atomic on caches whose
``add`` is atomic (memcached, the database cache; locmem within one process), but the ignore
check and the acquire are separate operations, and so are reading the holder and deleting the
lock. A release is therefore not owner-safe against a lock that expired and was taken by another
call in between, and a call that found no ignore window just before a success opened it may still
take the lock that success then releases, and run once more. The same holds for the lease of a
running attempt (its renewal reads, then touches), the stand-ins parked beside a call (a list
read, then written: two stand-ins parked at once may lose one, which then waits for its own
check) and the mark of a completed stand-in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .base import (
    DONE_PREFIX,
    LEASE_PREFIX,
    OUTCOME_PREFIX,
    WAITERS_PREFIX,
    Admission,
    Claim,
    Look,
    Outcome,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.core.cache.backends.base import BaseCache

    from .base import CallArguments, Lease

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
        holder = self._take(task_id, unique_key, lock_ttl)
        if holder == task_id:
            return Admission(Outcome.TRIGGER, task_id)
        return Admission(Outcome.UNIQUE, holder)

    def claim(
        self,
        *,
        task_id: str,
        unique_key: str,
        lease: Lease,
        task_name: str | None = None,
        arguments: CallArguments | None = None,
    ) -> Claim:
        """See :meth:`LockStore.claim`: reads and ``cache.add``, then the lease written.

        Raises:
            LockContentionError: the lock changed hands ``ADD_ATTEMPTS`` times in a row.
        """
        cache = self.cache
        if cache.get(_beside(OUTCOME_PREFIX, task_id, unique_key)) is not None:
            return Claim(task_id, taken=False, ended=True)
        lease_key = f"{LEASE_PREFIX}|{unique_key}"
        held = cache.get(unique_key)
        if held == task_id and cache.get(lease_key) not in {None, lease.token}:
            return Claim(task_id, taken=False, elsewhere=True)
        holder = held if held is not None else self._take(task_id, unique_key, lease.ttl)
        if holder != task_id:
            return Claim(holder, taken=False)
        cache.set(unique_key, task_id, lease.ttl)
        cache.set(lease_key, lease.token, lease.ttl)
        return Claim(task_id, taken=held is None)

    def _take(self, task_id: str, unique_key: str, lock_ttl: float | None) -> str:
        """Take the lock with ``cache.add``, or read its holder; return who holds it.

        Raises:
            LockContentionError: the lock changed hands ``ADD_ATTEMPTS`` times in a row.
        """
        for _ in range(self.ADD_ATTEMPTS):
            if self.cache.add(unique_key, task_id, lock_ttl):
                return task_id
            holder: str | None = self.cache.get(unique_key)
            if holder is not None:
                return holder
        msg = (
            f"unique lock {unique_key!r} changed hands {self.ADD_ATTEMPTS} times while "
            f"task {task_id!r} tried to take it"
        )
        raise LockContentionError(msg)

    def renew(self, leases: Sequence[Lease]) -> list[bool]:
        """See :meth:`LockStore.renew`: reads, then ``cache.touch``, lease by lease."""
        return [self._renew(lease) for lease in leases]

    def _renew(self, lease: Lease) -> bool:
        cache = self.cache
        lease_key = f"{LEASE_PREFIX}|{lease.unique_key}"
        if cache.get(lease.unique_key) != lease.task_id or cache.get(lease_key) != lease.token:
            return False
        return bool(cache.touch(lease.unique_key, lease.ttl) and cache.touch(lease_key, lease.ttl))

    def step_out(self, lease: Lease, lock_ttl: float) -> None:
        """See :meth:`LockStore.step_out`."""
        cache = self.cache
        lease_key = f"{LEASE_PREFIX}|{lease.unique_key}"
        if cache.get(lease_key) == lease.token:
            cache.delete(lease_key)
        if cache.get(lease.unique_key) == lease.task_id:
            cache.touch(lease.unique_key, lock_ttl)

    def release(
        self,
        *,
        task_id: str,
        unique_key: str | None,
        ignore_key: str | None,
        ignore_ttl: float | None,
        task_name: str | None = None,
        arguments: CallArguments | None = None,
        outcome: bytes | None = None,
        outcome_ttl: float | None = None,
    ) -> list[bytes]:
        """See :meth:`LockStore.release`; not owner-safe against a lock taken in between."""
        cache = self.cache
        if ignore_key is not None:
            cache.set(ignore_key, task_id, ignore_ttl)
        if unique_key is None:
            return []
        if cache.get(unique_key) == task_id:
            cache.delete_many([unique_key, f"{LEASE_PREFIX}|{unique_key}"])
        if outcome is not None:
            cache.set(_beside(OUTCOME_PREFIX, task_id, unique_key), outcome, outcome_ttl)
        waiters_key = _beside(WAITERS_PREFIX, task_id, unique_key)
        waiting: dict[str, bytes] = cache.get(waiters_key) or {}
        cache.delete(waiters_key)
        return list(waiting.values())

    def look(
        self,
        *,
        unique_key: str,
        task_id: str,
        waiter: bytes | None,
        waiter_ttl: float,
        waiter_id: str = "",
    ) -> Look:
        """See :meth:`LockStore.look`; a parked stand-in can be lost to one parked at once."""
        cache = self.cache
        outcome: bytes | None = cache.get(_beside(OUTCOME_PREFIX, task_id, unique_key))
        if outcome is not None:
            return Look(outcome, None)
        holder: str | None = cache.get(unique_key)
        if holder == task_id and waiter is not None:
            waiters_key = _beside(WAITERS_PREFIX, task_id, unique_key)
            cache.set(
                waiters_key, {**(cache.get(waiters_key) or {}), waiter_id: waiter}, waiter_ttl
            )
        return Look(None, holder)

    def complete_once(self, *, unique_key: str, task_id: str, ttl: float) -> bool:
        """See :meth:`LockStore.complete_once`: ``cache.add``."""
        return bool(self.cache.add(_beside(DONE_PREFIX, task_id, unique_key), task_id, ttl))

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


def _beside(prefix: str, task_id: str, unique_key: str) -> str:
    """Return the cache key ``prefix|task_id|unique_key``: a call's, beside its lock."""
    return f"{prefix}|{task_id}|{unique_key}"
