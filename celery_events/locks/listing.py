"""The locks and ignore windows in Redis as operators see them: listed, read, released.

The Redis lock store writes an index entry beside each key it takes for a named task
(:mod:`celery_events.locks.index`); :class:`LockListing`, the store's base, finds the entries with
``SCAN`` (never ``KEYS``), pages through them as the admin and ``manage.py celery_events list``
show them, and releases a key only while it still holds the holder that was read.

What is read back from Redis is read as data: a key's value as the text the cache's serializer
wrote (``RedisBinding.text`` of ``celery_events.locks.redis_cache``, never
unpickled), an index entry only once its signature and fields are checked. An entry that fails
is reported as a :class:`BadEntry`, never shown as a held key nor released.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from redis.cluster import RedisCluster

from .base import UnreadableLockError
from .index import INDEX_PREFIX, Entry, KeyKind, entry_key_prefix, read_entry, searched_text
from .scan import scan_step

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.commands.core import Script

    from .redis_cache import RedisBinding

__all__ = ["BadEntry", "HeldKey", "HeldPage", "KeyKind", "LockListing"]


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
    shape: str | None = None
    """The call's shape, ``(int, label=str)``: its arguments' types without their values, when
    its index entry has them or its arguments (see ``celery_events.locks.index``).

    .. versionadded:: 0.2.0
    """


@dataclass(frozen=True, slots=True)
class BadEntry:
    """An index entry that cannot be taken for one the store wrote: shown, never acted on.

    .. versionadded:: 0.2.0
    """

    entry: str
    """The entry's Redis key."""
    problem: str
    """What is wrong with it: unsigned, not JSON, a missing field, a key that holds no task id..."""


@dataclass(frozen=True, slots=True)
class HeldPage:
    """One page of :meth:`~celery_events.locks.listing.LockListing.held_page`, or all of ``held``.

    .. versionadded:: 0.1.0
    """

    keys: list[HeldKey]
    """The held keys found, soonest to expire first."""
    cursor: str | None
    """Where the next page starts (pass it back), or None when the keyspace has been walked."""
    bad: list[BadEntry] = dataclasses.field(default_factory=list)
    """The index entries found that are not the store's, or whose key holds no task id.

    .. versionadded:: 0.2.0
    """


def _glob_escape(text: str) -> str:
    """Return ``text`` as a ``SCAN MATCH`` pattern that matches only itself."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def _by_time_left(keys: list[HeldKey]) -> list[HeldKey]:
    return sorted(keys, key=lambda key: (key.ttl is None, key.ttl or 0, key.task_name))


def _seconds_left(pttl: int) -> float | None:
    return None if pttl < 0 else pttl / 1000


def _text(value: bytes | str) -> str:
    """Return a Redis key or value as text; bytes that are not UTF-8 as replacement characters."""
    return value if isinstance(value, str) else value.decode(errors="replace")


def _slot_of(entry: Entry) -> tuple[str, KeyKind, str, str]:
    """Return what names ``entry``'s Redis key: task, kind, key, and the key of its hash slot."""
    return entry.task_name, entry.kind, entry.key, entry.beside or entry.key


class LockListing:
    """The keys of a Redis lock store as operators see them: listed, read, released.

    The base of :class:`~celery_events.locks.RedisLockStore`, whose scripts write the entries.
    """

    binding: RedisBinding
    """The cache's client, key function and serializer."""
    _discard: Script
    """The compare-and-delete script of :meth:`discard`, registered by the store."""

    #: How many keys one ``SCAN`` call of :meth:`held` asks Redis to look at.
    SCAN_COUNT: Final = 1000
    #: How many keys one :meth:`held_page` asks Redis to look at, at most (about).
    PAGE_SCAN_BUDGET: Final = 50_000

    def _task_id(self, value: bytes, key: str | None) -> str:
        """Return the task id that ``value``, read from ``key``, holds.

        Raises:
            UnreadableLockError: ``value`` is not the cache's encoding of a text.
        """
        task_id = self.binding.text(value)
        if task_id is None:
            msg = (
                f"key {key!r} of cache {self.binding.cache_name!r} holds {len(value)} bytes that "
                "are not a task id written by the cache's serializer, so something other than "
                "celery-events or django-celery-extensions wrote them; they are not "
                "deserialized: look at them and delete the key"
            )
            raise UnreadableLockError(msg)
        return task_id

    def peek(self, keys: Sequence[tuple[str, str | None]]) -> list[tuple[str | None, float | None]]:
        """Return the value (a task id) and the seconds left of each key; one round trip.

        Args:
            keys: ``(key, beside)`` pairs, as ``RedisBinding.key`` takes them.

        Returns:
            ``(None, None)`` for a key that does not exist; a seconds left of None for a key
            that never expires.

        Raises:
            UnreadableLockError: a key holds a value that is not a task id.

        .. versionadded:: 0.1.0
        """
        return [
            (None if value is None else self._task_id(value, key), ttl)
            for (key, _), (value, ttl) in zip(keys, self._read(keys), strict=True)
        ]

    def _read(
        self, keys: Sequence[tuple[str, str | None]]
    ) -> list[tuple[bytes | None, float | None]]:
        """Return the raw value and the seconds left of each ``(key, beside)``; one round trip."""
        binding = self.binding
        if not keys:
            return []
        with binding.guard(f"read keys {[key for key, _ in keys]!r}"):
            pipe = binding.client.pipeline(transaction=False)
            for key, beside in keys:
                redis_key = binding.key(key, beside=beside)
                pipe.get(redis_key)
                pipe.pttl(redis_key)
            replies = pipe.execute()
        return [
            (None, None) if value is None else (value, _seconds_left(pttl))
            for value, pttl in zip(replies[::2], replies[1::2], strict=True)
        ]

    def held(self, task_name: str | None = None) -> HeldPage:
        """Return the locks and ignore windows that have an index entry, soonest to expire first.

        Iterates the keyspace with ``SCAN MATCH`` (never ``KEYS``), so Redis serves other
        clients between the calls; then reads the entries, and the keys they name, with one
        ``MGET`` and one pipeline per step. Keys taken without a task name
        (django-celery-extensions) have no entry.

        Args:
            task_name: only this task's keys; all tasks' by default.

        Returns:
            Every held key and every bad entry found; the cursor is None.

        .. versionadded:: 0.1.0
        .. versionchanged:: 0.2.0
            Returns a :class:`~celery_events.operations.HeldPage` with the bad entries, not a
            list.
        """
        binding = self.binding
        pattern = self._entries_pattern(task_name, None)
        with binding.guard(f"list the keys of {task_name or 'every task'!r}"):
            entries = list(binding.client.scan_iter(match=pattern, count=self.SCAN_COUNT))
            keys, bad = self._read_entries(entries, task_name, None)
        return HeldPage(_by_time_left(keys), None, bad)

    def held_page(
        self,
        cursor: str | None = None,
        *,
        task_name: str | None = None,
        kind: KeyKind | None = None,
        search: str | None = None,
        search_arguments: bool = True,
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
            search: only keys whose task name, key, holder's task id, shape or arguments
                contain it (case-insensitive); bad entries are left out of a search.
            search_arguments: whether the search looks in the arguments too.
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
        bad: list[BadEntry] = []
        count, scanned = size, 0
        with binding.guard(f"list the keys of {task_name or 'every task'!r}"):
            while True:
                cursor, entries = scan_step(binding.client, cursor, pattern, count)
                scanned += count
                keys, wrong = self._read_entries(
                    entries, task_name, kind, needle, search_arguments=search_arguments
                )
                found += keys
                bad += wrong
                if cursor is None or len(found) >= size or scanned >= self.PAGE_SCAN_BUDGET:
                    return HeldPage(_by_time_left(found), cursor, bad)
                # Few matches so far: the keyspace is mostly other keys, look further per step.
                count = min(count * 2, self.SCAN_COUNT)

    def entry(
        self, task_name: str, kind: KeyKind, key: str, beside: str | None
    ) -> HeldKey | BadEntry | None:
        """Return the held key that an index entry names, read by the entry's name; two reads.

        Args:
            task_name: the task, as the entry names it.
            kind: the key's kind.
            key: the cache key.
            beside: the unique key an ignore window sits beside, or None.

        Returns:
            The held key; a :class:`~celery_events.operations.BadEntry` when the entry is not
            the store's or its key holds no task id; None when there is no such entry, or its
            key is no longer held.

        Raises:
            LockStoreUnavailableError: the store's Redis could not be reached.

        .. versionadded:: 0.2.0
        """
        binding = self.binding
        entry_key = self._entry_key(task_name, kind, key, beside or key)
        with binding.guard(f"read the index entry of {kind} key {key!r}"):
            keys, bad = self._read_entries([entry_key], task_name, kind)
        return keys[0] if keys else (bad[0] if bad else None)

    def _entries_pattern(self, task_name: str | None, kind: KeyKind | None) -> str:
        """Return the ``SCAN MATCH`` pattern of the index entries of a task (and kind)."""
        prefix = f"{INDEX_PREFIX}|" if task_name is None else entry_key_prefix(task_name)
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
        *,
        search_arguments: bool = True,
    ) -> tuple[list[HeldKey], list[BadEntry]]:
        """Return the keys that ``entries`` name and that are held, and the bad entries.

        An ``MGET`` of the entries, then a pipeline of their keys. An entry is *bad* when
        ``read_entry`` (``celery_events.locks.index``) refuses it, when it is stored under
        another name than its own fields make (copied), or when its key holds a value that is
        not a task id; a bad entry's key is never read as a holder nor released.

        Args:
            entries: the Redis keys of index entries.
            task_name: only this task's keys.
            kind: only keys of this kind.
            needle: only keys whose entry's searched text contains it, case-folded; no bad
                entries then.
            search_arguments: whether the needle is looked for in the arguments too.
        """
        if not entries:
            return [], []
        client = self.binding.client
        # One MGET reads a step's entries twice as fast as as many GETs in a pipeline; a Redis
        # Cluster's entries are in many slots, and redis-py splits its MGET by slot.
        values = (
            client.mget_nonatomic(entries)
            if isinstance(client, RedisCluster)
            else client.mget(entries)
        )
        read: list[Entry] = []
        bad: list[BadEntry] = []
        for name, value in zip(entries, cast("list[bytes | None]", values), strict=True):
            # An entry whose text lacks the needle cannot match: most of a search's entries are
            # dropped here, unchecked, and their keys are never read.
            if value is None or (needle is not None and needle not in _text(value).casefold()):
                continue
            entry_name = _text(name)
            try:
                entry = read_entry(value)
                self._check_name(entry, entry_name)
            except ValueError as exc:
                if needle is None:
                    bad.append(BadEntry(entry_name, str(exc)))
                continue
            # A prefix is shared by names that differ only in braces, and a kind is not in the
            # pattern of all tasks' entries: the entry's own fields decide.
            if (
                (task_name is None or entry.task_name == task_name)
                and (kind is None or entry.kind == kind)
                and (needle is None or needle in searched_text(entry, arguments=search_arguments))
            ):
                read.append(entry)
        found = []
        for entry, (value, ttl) in zip(
            read, self._read([(entry.key, entry.beside) for entry in read]), strict=True
        ):
            if value is None:  # released or expired since the entry was written
                continue
            task_id = self.binding.text(value)
            if task_id is None:
                problem = f"its key {entry.key!r} holds {len(value)} bytes that are not a task id"
                bad.append(BadEntry(self._entry_key(*_slot_of(entry)), problem))
                continue
            found.append(
                HeldKey(
                    entry.task_name,
                    entry.kind,
                    entry.key,
                    entry.beside,
                    task_id,
                    ttl,
                    entry.args,
                    entry.kwargs,
                    entry.shape,
                )
            )
        return found, bad

    def _check_name(self, entry: Entry, name: str) -> None:
        """Raise ValueError when ``entry`` is stored under another name than its own."""
        own = self._entry_key(*_slot_of(entry))
        if name != own:
            msg = f"its fields name the entry {own!r}: a copy of another entry"
            raise ValueError(msg)

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
        return self.binding.key(f"{entry_key_prefix(task_name)}{kind}|{key}", beside=slot_of)
