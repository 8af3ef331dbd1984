"""The interface between DjangoTask and the keys of its unique and ignore-after-success calls."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from celery.exceptions import CeleryError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DONE_PREFIX",
    "LEASE_PREFIX",
    "OUTCOME_PREFIX",
    "WAITERS_PREFIX",
    "Admission",
    "CallArguments",
    "Claim",
    "Lease",
    "LockStore",
    "LockStoreUnavailableError",
    "Look",
    "Outcome",
    "UnreadableLockError",
]

#: The cache-key prefixes of what a store keeps beside a lock (in its hash slot, in Redis): the
#: running attempt's lease, the outcome a call left, the stand-ins waiting for a call, and the
#: mark of a completed stand-in; each is followed by ``|`` and the lock's key or a task id.
LEASE_PREFIX: Final = "celery-events|lease"
OUTCOME_PREFIX: Final = "celery-events|outcome"
WAITERS_PREFIX: Final = "celery-events|waiters"
DONE_PREFIX: Final = "celery-events|done"

CallArguments: TypeAlias = "tuple[Sequence[Any] | None, Mapping[str, Any] | None]"
"""A call's positional and keyword arguments; None for none, as Celery hands them."""


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


@dataclass(frozen=True, slots=True)
class Claim:
    """The lock store's answer to an attempt that starts: who holds the lock now.

    .. versionadded:: 0.1.0
    """

    holder: str
    """The task id that holds the lock: the attempt's own, or another call's."""
    taken: bool
    """Whether the claim took the lock: it was free (expired, released, or never taken)."""
    elsewhere: bool = False
    """Another attempt of the same task id holds the lease: it runs the body now (the attempt
    that starts is a second delivery of its message). The attempt took nothing.

    .. versionadded:: 0.2.0
    """
    ended: bool = False
    """The task id's call has ended and left its outcome: the attempt that starts is a late
    delivery of its message. The attempt took nothing.

    .. versionadded:: 0.2.0
    """


@dataclass(frozen=True, slots=True)
class Lease:
    """A running attempt's hold on its call's lock, renewed while the body runs.

    .. versionadded:: 0.2.0
    """

    unique_key: str
    """The lock's key."""
    task_id: str
    """The call's task id, which the lock holds."""
    token: str
    """The attempt's own token: another attempt of the same task id has another."""
    ttl: float
    """Seconds the lock and the lease live past each renewal: the call's stale time limit."""


@dataclass(frozen=True, slots=True)
class Look:
    """What a stand-in finds of the call it joined (:meth:`LockStore.look`).

    .. versionadded:: 0.2.0
    """

    outcome: bytes | None
    """The outcome the call left when it ended (see :mod:`celery_events.outcomes`), else None."""
    holder: str | None
    """Who holds the lock now: the call joined (it runs, or waits to), another call, or None."""


class LockStoreUnavailableError(CeleryError):
    """The Redis behind the lock store could not be reached; nothing was decided.

    Raised to the caller of a unique or ignore-configured task (and to a beat that starts), so
    that the caller decides: a call is never published without its lock, nor silently dropped.
    The message names the cache alias and the operation; the Redis error is the ``__cause__``.

    .. versionadded:: 0.1.0
    """


class UnreadableLockError(LockStoreUnavailableError):
    """A lock or ignore window holds a value that is not a task id; nothing was decided.

    The value is not what the lock store, django-celery-extensions or the cache API write for a
    task id (the cache's encoding of a text), so something else wrote it; it is never
    deserialized to find out what it is (see ``celery_events.locks.values``). Raised where a
    holder is read, as an unreachable Redis is: the caller of a unique task, the worker's gate,
    ``holder()``, ``manage.py celery_events explain``. The message names the key.

    .. versionadded:: 0.2.0
    """


class LockStore(Protocol):
    """Where the unique locks and ignore windows of tasks live.

    Keys are the ones ``unique_key_generator`` returns; a store may name them differently in its
    backend (the Redis store adds the cache's key prefix and a Redis Cluster hash tag).
    """

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
        """Check the ignore window, then take the unique lock for ``task_id``.

        Args:
            task_id: the id the call will be published with.
            unique_key: the lock's key, or None for a task that is not unique.
            lock_ttl: seconds the lock lives if never released (stale_time_limit + any delay);
                None keeps it until it is released.
            ignore_key: the ignore window's key, or None for a task without one.
            task_name: the task's name, for a store that indexes its keys by task (the Redis
                store, for ``manage.py celery_events list`` and the admin).
            arguments: the call's positional and keyword arguments, which such a store keeps
                in the index beside the task's name when they are JSON.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.
        """
        ...

    def claim(
        self,
        *,
        task_id: str,
        unique_key: str,
        lease: Lease,
        task_name: str | None = None,
        arguments: CallArguments | None = None,
    ) -> Claim:
        """Make sure ``task_id`` holds ``unique_key``, and take the lease for the attempt.

        Called where an attempt starts (see :mod:`celery_events.worker`): a lock that expired
        while its message waited (a redelivery, a long retry) is taken again, and a lock that
        another call took in the meantime is reported, so that two bodies never run at once; so
        is a lease that another attempt of the same task id holds, and an outcome the task id
        already left (a message delivered again).

        Args:
            task_id: the starting attempt's task id.
            unique_key: the lock's key.
            lease: the attempt's lease: its token, and how long the lock and the lease live
                unless renewed.
            task_name: the task's name, as for :meth:`admit`.
            arguments: the call's arguments, as for :meth:`admit`.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.

        .. versionadded:: 0.1.0
        """
        ...

    def renew(self, leases: Sequence[Lease]) -> list[bool]:
        """Renew the leases of running attempts, each only while its lock and lease are its own.

        Args:
            leases: the leases; the Redis store renews them all in one round trip (one per
                node of a Redis Cluster).

        Returns:
            Whether each lease was renewed; False for one that was lost (its lock expired, and
            another call may have taken it).

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.

        .. versionadded:: 0.2.0
        """
        ...

    def step_out(self, lease: Lease, lock_ttl: float) -> None:
        """Drop an attempt's lease and keep its call's lock ``lock_ttl`` seconds more.

        For an attempt that ends without ending its call: a retry, a replace by the same call.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.

        .. versionadded:: 0.2.0
        """
        ...

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
        """End ``task_id``'s call: free its lock, open its window, leave its outcome.

        The lock (and its lease) is deleted only if ``task_id`` holds it.

        Args:
            task_id: the finishing task's id; only the holder's release deletes the lock.
            unique_key: the lock's key, or None.
            ignore_key: the ignore window to open (after a success), or None.
            ignore_ttl: seconds the ignore window stays open.
            task_name: the task's name, as for :meth:`admit`.
            arguments: the call's arguments, as for :meth:`admit`.
            outcome: the call's outcome, for whoever joined it (see
                :mod:`celery_events.outcomes`); None to leave none.
            outcome_ttl: seconds the outcome is kept.

        Returns:
            The stand-ins that waited for the call to end (:meth:`look`), to publish again.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.
        """
        ...

    def look(
        self,
        *,
        unique_key: str,
        task_id: str,
        waiter: bytes | None,
        waiter_ttl: float,
        waiter_id: str = "",
    ) -> Look:
        """Look at the call ``task_id`` that a stand-in joined; park the stand-in while it runs.

        Args:
            unique_key: the lock's key.
            task_id: the call joined.
            waiter: the stand-in, as :meth:`release` is to return it when the call ends; None
                not to park it (an eager stand-in waits in place).
            waiter_ttl: seconds the parked stand-ins are kept.
            waiter_id: the stand-in's task id: parked again, it is returned once.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.

        .. versionadded:: 0.2.0
        """
        ...

    def complete_once(self, *, unique_key: str, task_id: str, ttl: float) -> bool:
        """Mark stand-in ``task_id`` completed; False if it was before.

        A stand-in's message can be delivered twice (published again to wake it, and as its
        own check; or by the broker); only the first delivery to complete its task id does, so
        that what follows it runs once.

        Args:
            unique_key: the lock's key, beside which the mark is kept.
            task_id: the stand-in's task id.
            ttl: seconds the mark is kept.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.

        .. versionadded:: 0.2.0
        """
        ...

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
        """Open the ignore window ``ignore_key`` and leave the unique lock as it is.

        Args:
            task_id: the task that opens the window.
            ignore_key: the ignore window's key.
            ignore_ttl: seconds the window stays open.
            unique_key: the call's lock key when the task is unique, for a store that keeps the
                window beside the lock (the Redis store); the lock itself is not touched.
            task_name: the task's name, as for :meth:`admit`.
            arguments: the call's arguments, as for :meth:`admit`.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.
        """
        ...

    def holder(self, unique_key: str) -> str | None:
        """Return the task id that holds ``unique_key``, or None when it is free.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.
        """
        ...
