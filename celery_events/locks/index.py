"""The index of the locks and ignore windows in Redis, for operators to list and release.

Keys are hashes of a call's arguments, so the name of the task cannot be read from them. When the
caller names the task, the same script that takes a lock or opens a window also writes an *index
entry* beside it (in the same script): a key named
``celery-events|held|<task>|<kind>|<key>`` (braces of the task's name replaced by parentheses) in
the same hash slot, holding the task's name, the key's kind and name, its holder's task id and,
when they are short JSON, the call's arguments, with the same time to live; the script that
releases the lock deletes it. ``manage.py celery_events list`` and the admin find the entries
with ``SCAN`` (:meth:`LockIndex.held`, :meth:`LockIndex.held_page`). An entry never outlives its
key's time to live, so the index needs no pruning; an entry whose key went first (deleted by
django-celery-extensions) is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

from redis.cluster import RedisCluster

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from redis.commands.core import Script

    from .base import CallArguments
    from .redis_cache import RedisBinding, RedisClient

__all__ = [
    "ENTRY_ARGUMENTS_LIMIT",
    "INDEX_PREFIX",
    "HeldKey",
    "HeldPage",
    "KeyKind",
    "LockIndex",
    "entry_value",
]

#: The cache-key prefix of the index entries (see the module's docstring).
INDEX_PREFIX: Final = "celery-events|held"

#: The longest index entry (in characters of JSON) that keeps the call's arguments.
ENTRY_ARGUMENTS_LIMIT: Final = 2048

KeyKind: TypeAlias = Literal["unique", "ignore"]
"""What a key of a call is: its unique lock, or its ignore window."""

#: Index entries are written on every trigger: compact JSON, by an encoder made once.
_encode_entry: Final = json.JSONEncoder(separators=(",", ":")).encode


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
    """One page of :meth:`~celery_events.locks.index.LockIndex.held_page`.

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


def entry_value(
    task_name: str,
    kind: KeyKind,
    key: str,
    beside: str | None,
    task_id: str,
    arguments: CallArguments | None,
) -> str:
    """Return the JSON of an index entry; with the call's arguments when they are JSON and short.

    The entry names the task, the key and the task id the key holds, so that a search of the
    index (:meth:`LockIndex.held_page`) reads only the keys of the entries that match.
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
    """Return what :meth:`LockIndex.held_page`'s search looks in, of an index entry."""
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


class LockIndex:
    """The index of the keys of a Redis lock store: list, read and release them.

    The base of :class:`~celery_events.locks.RedisLockStore`, which writes the entries.
    """

    binding: RedisBinding
    """The cache's client, key function and serializer."""
    _discard: Script
    """The compare-and-delete script of :meth:`discard`, registered by the store."""

    #: How many keys one ``SCAN`` call of :meth:`held` asks Redis to look at.
    SCAN_COUNT: Final = 1000
    #: How many keys one :meth:`held_page` asks Redis to look at, at most (about).
    PAGE_SCAN_BUDGET: Final = 50_000

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
