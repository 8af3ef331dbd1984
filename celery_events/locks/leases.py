"""The leases of the bodies a process runs, renewed together by one thread of that process.

While an attempt runs the body of a unique call, its lock and its lease must not expire: the
worker (:mod:`celery_events.worker`) hands the attempt's :class:`~celery_events.locks.Lease` to
:data:`keeper` when the body starts and takes it back when it ends. The keeper's thread renews
every lease it holds a third of the shortest lease's life after the last renewal, all in one
call of the lock store (one Redis round trip, one per node of a Redis Cluster), whatever the
number of bodies the process runs. A lease lost (its lock expired during a pause longer than
the stale time limit, and may have been taken) is logged and renewed no more; a lock store that
cannot be reached is logged and tried again at the next renewal.

The thread is started by the first lease a process holds, and again in a process forked from
one that had it (a prefork pool's children).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Final

from celery_events.locks import get_lock_store

from .base import LockStoreUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .base import Lease, LockStore

__all__ = ["LeaseKeeper", "keeper"]

logger: Final = logging.getLogger("celery_events")


class LeaseKeeper:
    """Renews the leases it holds, from a thread of its own, in one lock store call each time.

    Args:
        store: returns the lock store to renew the leases in (called in the keeper's thread).
        renewals_per_lease: how many renewals fit in the life of the shortest lease held.
    """

    def __init__(self, store: Callable[[], LockStore], renewals_per_lease: int = 3) -> None:
        self._store = store
        self._renewals_per_lease = renewals_per_lease
        self._leases: dict[tuple[str, str], Lease] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def hold(self, lease: Lease) -> None:
        """Renew ``lease`` until :meth:`drop`: its body starts."""
        with self._changed:
            self._leases[lease.unique_key, lease.token] = lease
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._renew_forever, name="celery-events-leases", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def drop(self, lease: Lease) -> None:
        """Renew ``lease`` no more: its body ended."""
        with self._changed:
            self._leases.pop((lease.unique_key, lease.token), None)

    def held(self) -> list[Lease]:
        """Return the leases held now."""
        with self._changed:
            return list(self._leases.values())

    def _renew_forever(self) -> None:
        last = time.monotonic()
        while True:
            with self._changed:
                while True:
                    if not self._leases:  # idle: the next lease was just taken, with its life
                        self._changed.wait()
                        last = time.monotonic()
                        continue
                    shortest = min(lease.ttl for lease in self._leases.values())
                    left = last + shortest / self._renewals_per_lease - time.monotonic()
                    if left <= 0:
                        break
                    # A lease held meanwhile may be shorter: the wait is measured again then.
                    self._changed.wait(left)
            self.renew()
            last = time.monotonic()

    def renew(self) -> None:
        """Renew every lease held now, in one call of the lock store; forget those lost."""
        leases = self.held()
        if not leases:
            return
        try:
            renewed = self._store().renew(leases)
        except LockStoreUnavailableError:
            logger.warning(
                "could not renew the leases of %d running attempts; trying again at the "
                "next renewal",
                len(leases),
                exc_info=True,
            )
            return
        for lease, kept in zip(leases, renewed, strict=True):
            if not kept:
                self.drop(lease)
                logger.warning(
                    "task %s lost the lease of its unique lock %r while it ran (the lock "
                    "expired, stale_time_limit %s s after a renewal that did not come): another "
                    "call of the same arguments may run beside it",
                    lease.task_id,
                    lease.unique_key,
                    lease.ttl,
                )


keeper: Final = LeaseKeeper(get_lock_store)
"""The keeper of this process's leases."""
