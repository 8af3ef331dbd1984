"""The interface between DjangoTask and the keys of its unique and ignore-after-success calls."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from celery.exceptions import CeleryError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "Admission",
    "CallArguments",
    "Claim",
    "LockStore",
    "LockStoreUnavailableError",
    "Outcome",
    "UnreadableLockError",
]

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
        lock_ttl: float | None,
        task_name: str | None = None,
        arguments: CallArguments | None = None,
    ) -> Claim:
        """Make sure ``task_id`` holds ``unique_key``: take the lock when it is free.

        Called where an attempt starts (see :mod:`celery_events.worker`): a lock that expired
        while its message waited (a redelivery, a long retry) is taken again, and a lock that
        another call took in the meantime is reported, so that two bodies never run at once.

        Args:
            task_id: the starting attempt's task id.
            unique_key: the lock's key.
            lock_ttl: seconds the lock lives if taken now; None keeps it until it is released.
            task_name: the task's name, as for :meth:`admit`.
            arguments: the call's arguments, as for :meth:`admit`.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.

        .. versionadded:: 0.1.0
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
    ) -> None:
        """Release ``unique_key`` if ``task_id`` holds it; open the ignore window if a key is given.

        Args:
            task_id: the finishing task's id; only the holder's release deletes the lock.
            unique_key: the lock's key, or None.
            ignore_key: the ignore window to open (after a success), or None.
            ignore_ttl: seconds the ignore window stays open.
            task_name: the task's name, as for :meth:`admit`.
            arguments: the call's arguments, as for :meth:`admit`.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.
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
