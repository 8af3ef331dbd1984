"""The lock store for a Django cache in Redis: atomic, owner-safe, one round trip per step.

Each step of a call is one script (:mod:`celery_events.locks.scripts`): its trigger (ignore
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

Keys are hashes of a call's arguments, so the name of the task cannot be read from them. When the
caller names the task (``task_name``), the same script that takes a lock or opens a window also
writes an *index entry* beside it: a key named ``celery-events|held|<task>|<kind>|<key>`` (braces
of the task's name replaced by parentheses) in the same hash slot, holding the task's name and the
key's Redis name, with the same time to live; the script that releases the lock deletes it.
``manage.py celery_events list`` finds the entries with ``SCAN`` (:meth:`RedisLockStore.held`).
An entry never outlives its key's time to live, so the index needs no pruning; an entry whose key
went first (deleted by django-celery-extensions) is skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

from redis.cluster import RedisCluster
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

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from redis.commands.core import Script

    from .base import CallArguments, Lease
    from .redis_cache import RedisBinding, RedisClient

__all__ = [
    "ENTRY_ARGUMENTS_LIMIT",
    "INDEX_PREFIX",
    "HeldKey",
    "HeldPage",
    "KeyKind",
    "RedisLockStore",
]

#: The cache-key prefix of the index entries (see the module's docstring).
INDEX_PREFIX: Final = "celery-events|held"

#: The longest index entry (in characters of JSON) that keeps the call's arguments.
ENTRY_ARGUMENTS_LIMIT: Final = 2048

KeyKind: TypeAlias = Literal["unique", "ignore"]
"""What a key of a call is: its unique lock, or its ignore window."""

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

#: Index entries are written on every trigger: compact JSON, by an encoder made once.
_encode_entry: Final = json.JSONEncoder(separators=(",", ":")).encode


def _milliseconds(seconds: float | None) -> int:
    """Return a time to live for ``PX`` (at least 1 ms), or 0 for a key that never expires."""
    return 0 if seconds is None else max(1, math.ceil(seconds * 1000))


@dataclass(frozen=True, slots=True)
class HeldKey:
    """A lock or an ignore window found through its index entry (``RedisLockStore.held``).

    .. versionadded:: 0.1.0
    """

    task_name: str
    kind: KeyKind
    key: str
    """The cache key (``unique_key_generator``'s), not the Redis key."""
    beside: str | None
    """The unique key whose hash slot an ignore window shares, or None."""
    task_id: str
    """The holder of a lock; the task that opened a window."""
    ttl: float | None
    """Seconds left; None when the key never expires."""
    args: list[Any] | None = None
    """The call's positional arguments, when its index entry has them (JSON, short)."""
    kwargs: dict[str, Any] | None = None
    """The call's keyword arguments, when its index entry has them."""


@dataclass(frozen=True, slots=True)
class HeldPage:
    """One page of :meth:`~celery_events.locks.RedisLockStore.held_page`.

    .. versionadded:: 0.1.0
    """

    keys: list[HeldKey]
    """The held keys found, soonest to expire first."""
    cursor: str | None
    """Where the next page starts (pass it back), or None when the keyspace has been walked."""


def _glob_escape(text: str) -> str:
    """Return ``text`` as a ``SCAN MATCH`` pattern that matches only itself."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def _entry_key_prefix(task_name: str) -> str:
    """Return the cache-key prefix of the index entries of task ``task_name``.

    Braces of the name become parentheses: Redis Cluster would hash a ``{...}`` of the name
    instead of the hash tag that puts an entry in its key's slot. Writing an entry and listing
    them both name it here, so that ``list --task`` finds the entries of ``reports.{daily}``.
    Names that differ only there share a prefix; :meth:`RedisLockStore.held` therefore keeps
    only the entries that hold the name asked for.
    """
    return f"{INDEX_PREFIX}|{task_name.replace('{', '(').replace('}', ')')}|"


def _entry_value(
    task_name: str,
    kind: KeyKind,
    key: str,
    beside: str | None,
    task_id: str,
    arguments: CallArguments | None,
) -> str:
    """Return the JSON of an index entry; with the call's arguments when they are JSON and short.

    The entry names the task, the key and the task id the key holds, so that a search of the
    index (:meth:`RedisLockStore.held_page`) reads only the keys of the entries that match.
    Arguments that JSON cannot encode (the pickle serializer's objects) or that would make the
    entry longer than :data:`ENTRY_ARGUMENTS_LIMIT` are left out: the entry names the key all
    the same, and the admin shows the call's arguments as unknown.
    """
    entry: dict[str, Any] = {
        "task": task_name,
        "kind": kind,
        "key": key,
        "beside": beside,
        "id": task_id,
    }
    if arguments is not None:
        args, kwargs = arguments
        try:
            # None for none (as Celery hands them) is written as empty ones, as explain takes them.
            with_arguments = _encode_entry({**entry, "args": args or (), "kwargs": kwargs or {}})
        except (TypeError, ValueError):  # not JSON; a circular structure is a ValueError
            pass
        else:
            if len(with_arguments) <= ENTRY_ARGUMENTS_LIMIT:
                return with_arguments
    return _encode_entry(entry)


def _by_time_left(keys: list[HeldKey]) -> list[HeldKey]:
    return sorted(keys, key=lambda key: (key.ttl is None, key.ttl or 0, key.task_name))


def _searched_text(ref: dict[str, Any]) -> str:
    """Return what :meth:`RedisLockStore.held_page`'s search looks in, of an index entry."""
    arguments = _encode_entry([ref["args"], ref["kwargs"]]) if "args" in ref else ""
    return f"{ref['task']}\n{ref['key']}\n{ref.get('id', '')}\n{arguments}".casefold()


def _scan_step(
    client: RedisClient, cursor: str | None, pattern: str, count: int
) -> tuple[str | None, list[bytes | str]]:
    """Run one ``SCAN`` step from ``cursor`` (None: the start); return the next one and the keys.

    The cursor is a text, None once the keyspace has been walked. A Redis Cluster has a cursor
    per primary, so its text is the JSON of the primaries' names and cursors not yet done.

    Raises:
        ValueError: ``cursor`` is not a cursor this function returned for ``client``.
    """
    if isinstance(client, RedisCluster):
        return _scan_cluster_step(client, cursor, pattern, count)
    try:
        position = 0 if cursor is None else int(cursor)
    except ValueError:
        position = -1
    if position < 0:
        msg = f"cursor {cursor!r} is not a SCAN cursor (a whole number, 0 or more)"
        raise ValueError(msg)
    position, keys = client.scan(cursor=position, match=pattern, count=count)
    return (str(position) if position else None), keys


def _scan_cluster_step(
    client: RedisCluster, cursor: str | None, pattern: str, count: int
) -> tuple[str | None, list[bytes | str]]:
    # redis-py types RedisCluster.scan as Redis.scan; on a cluster it answers the cursor of
    # each primary it asked, by the primary's name.
    scan = cast("Callable[..., tuple[dict[str, int], list[bytes | str]]]", client.scan)
    cursors: dict[str, int] = {}
    keys: list[bytes | str] = []
    if cursor is None:
        cursors, keys = scan(match=pattern, count=count)  # every primary, from 0
    else:
        try:
            positions = json.loads(cursor)
            nodes = {
                name: client.get_node(node_name=name)  # type: ignore[no-untyped-call]
                for name in positions
            }
        except (ValueError, TypeError, AttributeError):
            nodes = {}
        if not nodes or None in nodes.values():
            msg = f"cursor {cursor!r} is not a SCAN cursor of this Redis Cluster's primaries"
            raise ValueError(msg)
        for name, node in nodes.items():
            step, found = scan(
                cursor=positions[name], match=pattern, count=count, target_nodes=node
            )
            cursors.update(step)
            keys += found
    going_on = {name: position for name, position in cursors.items() if position}
    return (json.dumps(going_on) if going_on else None), keys


def _seconds_left(pttl: int) -> float | None:
    return None if pttl < 0 else pttl / 1000


class RedisLockStore:
    """A lock store in the Redis of a Django cache.

    Args:
        binding: the cache's client, key function and serializer.
    """

    #: How many keys one ``SCAN`` call of :meth:`held` asks Redis to look at.
    SCAN_COUNT: Final = 1000
    #: How many keys one :meth:`held_page` asks Redis to look at, at most (about).
    PAGE_SCAN_BUDGET: Final = 50_000

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
            return Admission(outcome, str(self.binding.decode(reply[1])))
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
            return Claim(str(self.binding.decode(reply[1])), taken=False)
        return Claim(
            task_id,
            taken=state == _TAKEN,
            elsewhere=state == _RUNNING_ELSEWHERE,
            ended=state == _ENDED,
        )

    def renew(self, leases: Sequence[Lease]) -> list[bool]:
        """See :meth:`LockStore.renew`; one pipeline (one round trip, one per cluster node)."""
        with self.binding.guard(f"renew the leases of {len(leases)} running attempts"):
            try:
                replies = self._renew_all(leases)
            except NoScriptError:  # a cluster's pipeline leaves loading the script to its user
                self.binding.client.script_load(scripts.RENEW)
                replies = self._renew_all(leases)
        return [bool(renewed) for renewed in replies]

    def _renew_all(self, leases: Sequence[Lease]) -> list[Any]:
        pipe = self.binding.client.pipeline(transaction=False)
        for lease in leases:
            keys = self._lease_keys(lease.unique_key, None, lock_entry=False)
            self._renew(
                keys=[name for _, name in keys],
                args=self._arguments(keys, lease.task_id, ttl=lease.ttl, token=lease.token),
                client=pipe,
            )
        return pipe.execute()

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
            outcome=outcome,
            kept=outcome_ttl,
        )
        return list(waiting)

    def look(
        self, *, unique_key: str, task_id: str, waiter: bytes | None, waiter_ttl: float
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
            kept=waiter_ttl,
        )
        state = reply[0]
        if state == _LOOK_OUTCOME:
            return Look(bytes(reply[1]), None)
        if state == _LOOK_STILL_HELD:
            return Look(None, task_id)
        if state == _LOOK_HELD_BY_ANOTHER:
            return Look(None, str(self.binding.decode(reply[1])))
        return Look(None, None)

    def complete_once(self, *, unique_key: str, task_id: str, message: str, ttl: float) -> bool:
        """See :meth:`LockStore.complete_once`; one round trip to Redis."""
        keys = [("done", self._beside(DONE_PREFIX, task_id, unique_key))]
        return bool(
            self._run(
                self._complete_once,
                f"complete stand-in {task_id!r} (unique key {unique_key!r})",
                keys,
                task_id,
                token=message,
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
        """See :meth:`LockStore.holder`; one ``GET``."""
        binding = self.binding
        with binding.guard(f"read the holder of unique key {unique_key!r}"):
            value = binding.client.get(binding.key(unique_key))
        # The cache's client answers bytes (decode_responses stays off for a cache).
        return None if value is None else str(binding.decode(cast("bytes", value)))

    def peek(self, keys: Sequence[tuple[str, str | None]]) -> list[tuple[str | None, float | None]]:
        """Return the value (a task id) and the seconds left of each key; one round trip.

        Args:
            keys: ``(key, beside)`` pairs, as ``RedisBinding.key`` takes them.

        Returns:
            ``(None, None)`` for a key that does not exist; a seconds left of None for a key
            that never expires.

        .. versionadded:: 0.1.0
        """
        binding = self.binding
        with binding.guard(f"read keys {[key for key, _ in keys]!r}"):
            pipe = binding.client.pipeline(transaction=False)
            for key, beside in keys:
                redis_key = binding.key(key, beside=beside)
                pipe.get(redis_key)
                pipe.pttl(redis_key)
            replies = pipe.execute()
        found: list[tuple[str | None, float | None]] = []
        for value, pttl in zip(replies[::2], replies[1::2], strict=True):
            if value is None:
                found.append((None, None))
            else:
                found.append((str(binding.decode(value)), _seconds_left(pttl)))
        return found

    def held(self, task_name: str | None = None) -> list[HeldKey]:
        """Return the locks and ignore windows that have an index entry, soonest to expire first.

        Iterates the keyspace with ``SCAN MATCH`` (never ``KEYS``), so Redis serves other
        clients between the calls; then reads the entries, and the keys they name, with one
        pipeline each. Keys taken without a task name (django-celery-extensions) have no entry.

        Args:
            task_name: only this task's keys; all tasks' by default.

        .. versionadded:: 0.1.0
        """
        binding = self.binding
        pattern = self._entries_pattern(task_name, None)
        with binding.guard(f"list the keys of {task_name or 'every task'!r}"):
            entries = list(binding.client.scan_iter(match=pattern, count=self.SCAN_COUNT))
            return _by_time_left(self._read_entries(entries, task_name, None))

    def held_page(
        self,
        cursor: str | None = None,
        *,
        task_name: str | None = None,
        kind: KeyKind | None = None,
        search: str | None = None,
        size: int = 100,
    ) -> HeldPage:
        """Return one page of the locks and ignore windows that have an index entry.

        Walks the keyspace with ``SCAN`` from ``cursor`` until it has found ``size`` keys (or
        a few more: a ``SCAN`` step is never cut), has walked it all, or has asked Redis to look
        at :attr:`PAGE_SCAN_BUDGET` keys; so a page costs a bounded number of round trips
        however many keys Redis holds. Pages follow the keyspace's order, not the time left;
        within a page, keys are sorted soonest to expire first.

        Args:
            cursor: where to go on, as the previous page's ``HeldPage.cursor``; None starts.
            task_name: only this task's keys.
            kind: only unique locks, or only ignore windows.
            search: only keys whose task name, key, holder's task id or arguments contain it
                (case-insensitive).
            size: how many keys the page aims at.

        Raises:
            ValueError: ``cursor`` is not one this method returned for this Redis.
            LockStoreUnavailableError: the store's Redis could not be reached.

        .. versionadded:: 0.1.0
        """
        binding = self.binding
        pattern = self._entries_pattern(task_name, kind)
        needle = search.casefold() if search else None
        found: list[HeldKey] = []
        count, scanned = size, 0
        with binding.guard(f"list the keys of {task_name or 'every task'!r}"):
            while True:
                cursor, entries = _scan_step(binding.client, cursor, pattern, count)
                scanned += count
                found += self._read_entries(entries, task_name, kind, needle)
                if cursor is None or len(found) >= size or scanned >= self.PAGE_SCAN_BUDGET:
                    return HeldPage(_by_time_left(found), cursor)
                # Few matches so far: the keyspace is mostly other keys, look further per step.
                count = min(count * 2, self.SCAN_COUNT)

    def _entries_pattern(self, task_name: str | None, kind: KeyKind | None) -> str:
        """Return the ``SCAN MATCH`` pattern of the index entries of a task (and kind)."""
        prefix = f"{INDEX_PREFIX}|" if task_name is None else _entry_key_prefix(task_name)
        if kind is None:
            return _glob_escape(self.binding.make_key(prefix)) + "*"
        if task_name is None:  # any task's name, then the kind's field
            return _glob_escape(self.binding.make_key(prefix)) + f"*|{kind}|*"
        return _glob_escape(self.binding.make_key(f"{prefix}{kind}|")) + "*"

    def _read_entries(
        self,
        entries: Sequence[bytes | str],
        task_name: str | None,
        kind: KeyKind | None,
        needle: str | None = None,
    ) -> list[HeldKey]:
        """Return the keys that ``entries`` name and that are held: an ``MGET``, then a pipeline.

        Args:
            entries: the Redis keys of index entries.
            task_name: only this task's keys.
            kind: only keys of this kind.
            needle: only keys whose entry's searched text (:func:`_searched_text`) contains it;
                case-folded.
        """
        if not entries:
            return []
        client = self.binding.client
        # One MGET reads a step's entries twice as fast as as many GETs in a pipeline; a Redis
        # Cluster's entries are in many slots, and redis-py splits its MGET by slot.
        values = (
            client.mget_nonatomic(entries)
            if isinstance(client, RedisCluster)
            else client.mget(entries)
        )
        refs = []
        for value in cast("list[bytes | None]", values):  # a cache's client answers bytes
            # An entry whose text lacks the needle cannot match: most of a search's entries are
            # dropped here, unparsed, and their keys are never read.
            if value is None:
                continue
            text = value.decode()
            if needle is not None and needle not in text.casefold():
                continue
            ref = json.loads(text)
            # A prefix is shared by names that differ only in braces, and a kind is not in the
            # pattern of all tasks' entries: the entry's own fields decide.
            if (
                (task_name is None or ref["task"] == task_name)
                and (kind is None or ref["kind"] == kind)
                and (needle is None or needle in _searched_text(ref))
            ):
                refs.append(ref)
        found = self.peek([(ref["key"], ref["beside"]) for ref in refs])
        return [
            HeldKey(
                ref["task"],
                ref["kind"],
                ref["key"],
                ref["beside"],
                task_id,
                ttl,
                ref.get("args"),
                ref.get("kwargs"),
            )
            for ref, (task_id, ttl) in zip(refs, found, strict=True)
            if task_id is not None
        ]

    def discard(
        self,
        *,
        task_id: str,
        kind: KeyKind,
        key: str,
        beside: str | None,
        task_name: str | None = None,
    ) -> bool:
        """Delete a lock or a window only while it still holds ``task_id``; one round trip.

        Args:
            task_id: the value the key must hold (the holder that was read before).
            kind: what the key is, to name its index entry.
            key: the cache key.
            beside: the unique key an ignore window sits beside, or None.
            task_name: the task, to delete the key's index entry with it.

        Returns:
            Whether the key was deleted.

        .. versionadded:: 0.1.0
        """
        binding = self.binding
        keys = [binding.key(key, beside=beside)]
        if task_name is not None:
            keys.append(self._entry_key(task_name, kind, key, beside or key))
        with binding.guard(f"release {kind} key {key!r} of task {task_id!r}"):
            return bool(self._discard(keys=keys, args=(binding.encode(task_id),)))

    def _entry_key(self, task_name: str, kind: KeyKind, key: str, slot_of: str) -> str:
        """Return the Redis key of the index entry of ``key``, in the hash slot of ``slot_of``."""
        return self.binding.key(f"{_entry_key_prefix(task_name)}{kind}|{key}", beside=slot_of)

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
            else _entry_value(task_name, "unique", unique_key, None, task_id, arguments)
        )
        window = (
            ""
            if ignore_key is None
            else _entry_value(
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
        outcome: bytes | None = None,
        kept: float | None = None,
    ) -> tuple[str | bytes | int, ...]:
        """Return the ``ARGV`` of a script (see :mod:`celery_events.locks.scripts`)."""
        return (
            " ".join(role for role, _ in keys),
            self.binding.encode(task_id),
            _milliseconds(ttl),
            *entries,
            token or "",
            outcome or "",
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
