"""The lock store for a Django cache in Redis: atomic, owner-safe, one round trip per step.

Each step of a call is one script (``celery_events.locks.scripts``): its trigger (ignore
check, then ``SET NX PX`` of the unique lock, or the holder's id); an attempt's start (the lock
holds its task id, or is taken again when free, or names another holder; and the attempt's
lease); the renewal of the leases of the bodies a process runs (one pipeline); a retry's step
out; a call's end (compare-and-delete of the lock, the ignore window, the outcome left for
whoever joined, and the stand-ins that waited); a stand-in's look at the call it joined. So no
concurrent call slips between the checks and the writes of any of them. The scripts are
registered once and run with ``EVALSHA`` (redis-py loads a script the server lacks).

Keys are the cache's own (``make_key``: prefix, version), so two projects on one Redis never share
a lock, and values are written with the cache's serializer, so ``cache.get(unique_key)`` returns
the holder's task id as it did with django-celery-extensions. The ignore window of a unique call
is named with a Redis Cluster hash tag that puts it in the lock's hash slot (see
:meth:`RedisBinding.key`); the lock itself keeps the cache's plain key, so processes of
django-celery-extensions and of this library exclude each other during a rolling upgrade.

When the caller names the task (``task_name``), the scripts also write and delete the *index
entries* of the keys, which :class:`~celery_events.locks.listing.LockListing`, the store's base,
lists and releases for operators.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, cast

from redis.cluster import PIPELINE_BLOCKED_COMMANDS, RedisCluster
from redis.exceptions import NoScriptError

from . import scripts
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
from .index import entry_value
from .listing import LockListing

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.commands.core import Script

    from .base import CallArguments, Lease
    from .redis_cache import RedisBinding

__all__ = ["RedisLockStore"]

_ADMITTED: Final = {0: Outcome.IGNORED, 1: Outcome.TRIGGER, 2: Outcome.UNIQUE}

# The replies of CLAIM (see celery_events.locks.scripts).
_TAKEN: Final = 0
_HELD_BY_ANOTHER: Final = 2
_RUNNING_ELSEWHERE: Final = 3
_ENDED: Final = 4
# The replies of CHECK.
_LOOK_OUTCOME: Final = 1
_LOOK_STILL_HELD: Final = 2
_LOOK_HELD_BY_ANOTHER: Final = 3

#: redis-py before 8.2 refuses ``EVALSHA`` in a cluster's pipeline: there, a process renews the
#: leases of its bodies one round trip each.
_CLUSTER_PIPELINES_RUN_SCRIPTS: Final = "EVALSHA" not in PIPELINE_BLOCKED_COMMANDS


def _milliseconds(seconds: float | None) -> int:
    """Return a time to live for ``PX`` (at least 1 ms), or 0 for a key that never expires."""
    return 0 if seconds is None else max(1, math.ceil(seconds * 1000))


class RedisLockStore(LockListing):
    """A lock store in the Redis of a Django cache.

    Args:
        binding: the cache's client, key function and serializer.
    """

    def __init__(self, binding: RedisBinding) -> None:
        self.binding = binding
        register = binding.client.register_script
        self._admit = register(scripts.ADMIT)
        self._claim = register(scripts.CLAIM)
        self._renew = register(scripts.RENEW)
        self._step_out = register(scripts.STEP_OUT)
        self._release = register(scripts.RELEASE)
        self._check = register(scripts.CHECK)
        self._complete_once = register(scripts.COMPLETE_ONCE)
        self._discard = register(scripts.DISCARD)

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
        """See :meth:`LockStore.admit`; one round trip to Redis."""
        keys = self._call_keys(unique_key, ignore_key, task_name, window_entry=False)
        reply = self._run(
            self._admit,
            f"admit task {task_id!r} (unique key {unique_key!r})",
            keys,
            task_id,
            ttl=lock_ttl,
            entries=self._entries(task_id, unique_key, None, task_name, arguments),
        )
        outcome = _ADMITTED[reply[0]]
        if outcome is Outcome.TRIGGER:
            return Admission(outcome, task_id)
        if outcome is Outcome.UNIQUE:
            return Admission(outcome, self._task_id(reply[1], unique_key))
        return Admission(outcome, None)

    def claim(
        self,
        *,
        task_id: str,
        unique_key: str,
        lease: Lease,
        task_name: str | None = None,
        arguments: CallArguments | None = None,
    ) -> Claim:
        """See :meth:`LockStore.claim`; one round trip to Redis."""
        keys = self._lease_keys(unique_key, task_name, lock_entry=True)
        keys.append(("outcome", self._beside(OUTCOME_PREFIX, task_id, unique_key)))
        reply = self._run(
            self._claim,
            f"claim unique key {unique_key!r} for task {task_id!r}",
            keys,
            task_id,
            ttl=lease.ttl,
            entries=self._entries(task_id, unique_key, None, task_name, arguments),
            token=lease.token,
        )
        state = reply[0]
        if state == _HELD_BY_ANOTHER:
            return Claim(self._task_id(reply[1], unique_key), taken=False)
        return Claim(
            task_id,
            taken=state == _TAKEN,
            elsewhere=state == _RUNNING_ELSEWHERE,
            ended=state == _ENDED,
        )

    def renew(self, leases: Sequence[Lease]) -> list[bool]:
        """See :meth:`LockStore.renew`; one pipeline (one round trip, one per cluster node).

        With redis-py before 8.2, a cluster's renewals are a round trip each.
        """
        with self.binding.guard(f"renew the leases of {len(leases)} running attempts"):
            try:
                replies = self._renew_all(leases)
            except NoScriptError:  # a cluster's pipeline leaves loading the script to its user
                self.binding.client.script_load(scripts.RENEW)
                replies = self._renew_all(leases)
        return [bool(renewed) for renewed in replies]

    def _renew_all(self, leases: Sequence[Lease]) -> list[Any]:
        client = self.binding.client
        if isinstance(client, RedisCluster) and not _CLUSTER_PIPELINES_RUN_SCRIPTS:
            return [self._renew_one(lease, client) for lease in leases]
        pipe = client.pipeline(transaction=False)
        for lease in leases:
            self._renew_one(lease, pipe)
        return pipe.execute()

    def _renew_one(self, lease: Lease, client: Any) -> Any:
        """Renew ``lease`` through ``client``: its reply, or the pipeline when it is one."""
        keys = self._lease_keys(lease.unique_key, None, lock_entry=False)
        return self._renew(
            keys=[name for _, name in keys],
            args=self._arguments(keys, lease.task_id, ttl=lease.ttl, token=lease.token),
            client=client,
        )

    def step_out(self, lease: Lease, lock_ttl: float) -> None:
        """See :meth:`LockStore.step_out`; one round trip to Redis."""
        keys = self._lease_keys(lease.unique_key, None, lock_entry=False)
        self._run(
            self._step_out,
            f"keep unique key {lease.unique_key!r} for the next attempt of {lease.task_id!r}",
            keys,
            lease.task_id,
            ttl=lock_ttl,
            token=lease.token,
        )

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
        """See :meth:`LockStore.release`; one round trip to Redis, owner-safe and atomic."""
        keys = self._call_keys(unique_key, ignore_key, task_name)
        if unique_key is not None:
            keys[1:1] = [("lease", self._beside(LEASE_PREFIX, unique_key, unique_key))]
            keys.append(("waiters", self._beside(WAITERS_PREFIX, task_id, unique_key)))
            if outcome is not None:
                keys.append(("outcome", self._beside(OUTCOME_PREFIX, task_id, unique_key)))
        waiting = self._run(
            self._release,
            f"release task {task_id!r} (unique key {unique_key!r})",
            keys,
            task_id,
            ttl=ignore_ttl,
            entries=self._entries(task_id, unique_key, ignore_key, task_name, arguments),
            payload=outcome,
            kept=outcome_ttl,
        )
        return list(waiting)

    def look(
        self,
        *,
        unique_key: str,
        task_id: str,
        waiter: bytes | None,
        waiter_ttl: float,
        waiter_id: str = "",
    ) -> Look:
        """See :meth:`LockStore.look`; one round trip to Redis."""
        keys = [
            ("lock", self.binding.key(unique_key)),
            ("outcome", self._beside(OUTCOME_PREFIX, task_id, unique_key)),
            ("waiters", self._beside(WAITERS_PREFIX, task_id, unique_key)),
        ]
        reply = self._run(
            self._check,
            f"look at task {task_id!r} (unique key {unique_key!r})",
            keys,
            task_id,
            token=waiter,
            payload=waiter_id.encode(),
            kept=waiter_ttl,
        )
        state = reply[0]
        if state == _LOOK_OUTCOME:
            return Look(bytes(reply[1]), None)
        if state == _LOOK_STILL_HELD:
            return Look(None, task_id)
        if state == _LOOK_HELD_BY_ANOTHER:
            return Look(None, self._task_id(reply[1], unique_key))
        return Look(None, None)

    def complete_once(self, *, unique_key: str, task_id: str, ttl: float) -> bool:
        """See :meth:`LockStore.complete_once`; one round trip to Redis."""
        keys = [("done", self._beside(DONE_PREFIX, task_id, unique_key))]
        return bool(
            self._run(
                self._complete_once,
                f"complete stand-in {task_id!r} (unique key {unique_key!r})",
                keys,
                task_id,
                kept=ttl,
            )
        )

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
        """See :meth:`LockStore.ignore`; one round trip, beside the call's lock."""
        keys = self._call_keys(None, ignore_key, task_name, beside=unique_key)
        self._run(
            self._release,
            f"open ignore window of task {task_id!r} (unique key {unique_key!r})",
            keys,
            task_id,
            ttl=ignore_ttl,
            entries=self._entries(task_id, None, ignore_key, task_name, arguments, unique_key),
        )

    def holder(self, unique_key: str) -> str | None:
        """See :meth:`LockStore.holder`; one ``GET``.

        Raises:
            UnreadableLockError: the lock holds a value that is not a task id.
        """
        binding = self.binding
        with binding.guard(f"read the holder of unique key {unique_key!r}"):
            value = binding.client.get(binding.key(unique_key))
        # The cache's client answers bytes (decode_responses stays off for a cache).
        return None if value is None else self._task_id(cast("bytes", value), unique_key)

    def _beside(self, prefix: str, name: str, unique_key: str) -> str:
        """Return the Redis key ``prefix|name``, in the hash slot of lock ``unique_key``."""
        return self.binding.key(f"{prefix}|{name}", beside=unique_key)

    def _lease_keys(
        self, unique_key: str, task_name: str | None, *, lock_entry: bool
    ) -> list[tuple[str, str]]:
        """Return the roles and Redis keys of a lock and its lease (and its index entry)."""
        keys = [
            ("lock", self.binding.key(unique_key)),
            ("lease", self._beside(LEASE_PREFIX, unique_key, unique_key)),
        ]
        if lock_entry and task_name is not None:
            keys.append(
                ("lock_entry", self._entry_key(task_name, "unique", unique_key, unique_key))
            )
        return keys

    def _call_keys(
        self,
        unique_key: str | None,
        ignore_key: str | None,
        task_name: str | None,
        *,
        window_entry: bool = True,
        beside: str | None = None,
    ) -> list[tuple[str, str]]:
        """Return the roles and Redis keys of a call's lock and window, and of their entries.

        Args:
            unique_key: the lock's key, or None.
            ignore_key: the window's key, or None.
            task_name: the task's name, to name the index entries; None for none.
            window_entry: whether the window's entry is among them (a trigger writes only the
                lock's).
            beside: the unique key the window sits beside when the lock is not among them.
        """
        slot_of = unique_key or beside
        keys = []
        if unique_key is not None:
            keys.append(("lock", self.binding.key(unique_key)))
        if ignore_key is not None:
            keys.append(("window", self.binding.key(ignore_key, beside=slot_of)))
        if task_name is not None:
            if unique_key is not None:
                entry = self._entry_key(task_name, "unique", unique_key, unique_key)
                keys.append(("lock_entry", entry))
            if ignore_key is not None and window_entry:
                entry = self._entry_key(task_name, "ignore", ignore_key, slot_of or ignore_key)
                keys.append(("window_entry", entry))
        return keys

    def _entries(
        self,
        task_id: str,
        unique_key: str | None,
        ignore_key: str | None,
        task_name: str | None,
        arguments: CallArguments | None,
        beside: str | None = None,
    ) -> tuple[str, str]:
        """Return the values of the index entries of a call's lock and window ('' for none)."""
        if task_name is None:
            return "", ""
        lock = (
            ""
            if unique_key is None
            else entry_value(task_name, "unique", unique_key, None, task_id, arguments)
        )
        window = (
            ""
            if ignore_key is None
            else entry_value(
                task_name, "ignore", ignore_key, unique_key or beside, task_id, arguments
            )
        )
        return lock, window

    def _arguments(
        self,
        keys: list[tuple[str, str]],
        task_id: str,
        *,
        ttl: float | None = None,
        entries: tuple[str, str] = ("", ""),
        token: str | bytes | None = None,
        payload: bytes | None = None,
        kept: float | None = None,
    ) -> tuple[str | bytes | int, ...]:
        """Return the ``ARGV`` of a script (see ``celery_events.locks.scripts``).

        ``token`` is ``ARGV[6]`` (a lease's token, or a stand-in to park), ``payload``
        ``ARGV[7]`` (an outcome to leave, or the parked stand-in's task id).
        """
        return (
            " ".join(role for role, _ in keys),
            self.binding.encode(task_id),
            _milliseconds(ttl),
            *entries,
            token or "",
            payload or "",
            _milliseconds(kept),
        )

    def _run(
        self,
        script: Script,
        operation: str,
        keys: list[tuple[str, str]],
        task_id: str,
        **arguments: Any,
    ) -> Any:
        """Run one of the scripts with a call's keys; return the script's reply.

        Args:
            script: the script.
            operation: what is done, for the error when Redis cannot be reached.
            keys: the roles and Redis keys the script takes.
            task_id: the call's task id.
            **arguments: the rest of the script's arguments, as :meth:`_arguments` takes them.
        """
        args = self._arguments(keys, task_id, **arguments)
        with self.binding.guard(operation):
            return script(keys=[name for _, name in keys], args=args)
