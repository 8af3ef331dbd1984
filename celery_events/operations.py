"""Answer "why didn't my task run?": explain, list and release unique locks and ignore windows.

The logic of ``manage.py celery_events`` (``celery_events.management.commands.celery_events``
is its command-line layer). A call is named by its task and its arguments, and its keys are
computed exactly as :class:`~celery_events.task.DjangoTask` computes them, so nothing is guessed.
:mod:`celery_events.operator_input` looks the task up and parses the arguments an operator
gives; :mod:`celery_events.operator_text` holds the words a key is shown in.

Only the Redis lock store can list keys (through the index entries it writes beside them, see
``celery_events.locks.index``) and release them owner-safe; on any other cache,
:func:`explain` and :func:`release` work through the cache's API and :func:`held` refuses.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

from django.core.cache import InvalidCacheBackendError

from .config import settings
from .locks import (
    CacheLockStore,
    LockStore,
    LockStoreUnavailableError,
    Outcome,
    RedisLockStore,
    get_lock_store,
)
from .locks.listing import BadEntry, HeldKey, HeldPage, KeyKind

# OperationError, get_task and parse_call were this module's in 0.1.0: importable from here still.
from .operator_input import OperationError, get_task, parse_call, shown
from .operator_text import time_left_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .task import DjangoTask

__all__ = [
    "PAGE_SIZE",
    "UNANSWERED",
    "BadEntry",
    "Explanation",
    "HeldKey",
    "HeldPage",
    "KeyState",
    "OperationError",
    "discard",
    "explain",
    "get_task",
    "held",
    "held_entry",
    "held_page",
    "parse_call",
    "release",
    "release_task",
]


_NEXT_CALL: Final = {
    Outcome.TRIGGER: "trigger: publish a new task",
    Outcome.UNIQUE: "return the holder's result ({task_id}); nothing is published",
    Outcome.IGNORED: "be ignored (IgnoredResult); nothing is published",
}


#: How many keys a page of the list aims at, in the admin and in ``list --json``.
PAGE_SIZE: Final = 100

#: What the operations raise for bad input or a cache that cannot answer (Redis unreachable, a
#: lock that holds no task id, ``CACHE_NAME`` naming no cache): the command and the admin show
#: each as a line, never as a traceback.
UNANSWERED: Final = (OperationError, LockStoreUnavailableError, InvalidCacheBackendError)


@dataclass(frozen=True, slots=True)
class KeyState:
    """The unique lock or the ignore window of one call, as it is now."""

    kind: KeyKind
    key: str
    """The cache key (``unique_key_generator``'s)."""
    beside: str | None
    """The unique key an ignore window sits beside (the Redis store's hash slot), or None."""
    task_id: str | None
    """The lock's holder or the window's opener; None when the key is free or closed."""
    ttl: float | None
    """Seconds left; None when the key is free, never expires, or the cache cannot tell."""


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the lock store holds for one call, and what its next ``apply_async`` does."""

    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    lock: KeyState | None
    """None when the task is not unique."""
    window: KeyState | None
    """None when the task has no ignore window (no ``ignore_task_timedelta``)."""
    next_call: Outcome
    """``triggered``, ``unique`` (returns the holder's result) or ``ignored``."""

    def as_dict(self) -> dict[str, Any]:
        """Return the explanation as plain data, for ``--json``."""
        data = asdict(self)
        data["next_call"] = self.next_call.value
        return data

    def next_call_text(self) -> str:
        """Return what the next call does, in words."""
        holder = self.lock.task_id if self.lock else None
        return _NEXT_CALL[self.next_call].format(task_id=holder)

    def key_lines(self) -> list[tuple[str, str]]:
        """Return a line per key, ``(label, state)``: what holds it, for how long.

        As ``manage.py celery_events explain`` prints them and the admin's Explain page shows
        them ("held by ID, 59.9 s left", "free", "closed", "none (not configured)").
        """
        lines = []
        for label, state, verb in (
            ("unique lock", self.lock, "held by"),
            ("ignore window", self.window, "opened by"),
        ):
            if state is None:
                lines.append((label, "none (not configured)"))
            elif state.task_id is None:
                lines.append((label, "free" if state.kind == "unique" else "closed"))
            else:
                lines.append((label, f"{verb} {state.task_id}, {time_left_text(state.ttl)} left"))
        return lines

    def held_keys(self) -> list[HeldKey]:
        """Return the call's held lock and open window, as :func:`discard` takes them."""
        return [
            HeldKey(
                self.task_name,
                state.kind,
                state.key,
                state.beside,
                state.task_id,
                state.ttl,
                self.args,
                self.kwargs,
            )
            for state in (self.lock, self.window)
            if state is not None and state.task_id is not None
        ]


def _call_keys(
    task: DjangoTask, args: list[Any], kwargs: dict[str, Any]
) -> list[tuple[KeyKind, str, str | None]]:
    """Return ``(kind, key, beside)`` of the call's lock and window, as DjangoTask makes them."""
    keys: list[tuple[KeyKind, str, str | None]] = []
    unique_key = None
    if task.unique:
        unique_key = task.unique_key_generator(settings.UNIQUE_TASK_KEY_PREFIX, args, kwargs)
        keys.append(("unique", unique_key, None))
    if task.ignore_task_timedelta is not None:
        ignore_key = task.unique_key_generator(settings.IGNORE_TASK_KEY_PREFIX, args, kwargs)
        keys.append(("ignore", ignore_key, unique_key))
    return keys


def _read(store: LockStore, keys: Sequence[tuple[KeyKind, str, str | None]]) -> list[KeyState]:
    if isinstance(store, RedisLockStore):
        found = store.peek([(key, beside) for _, key, beside in keys])
    elif isinstance(store, CacheLockStore):
        found = [(store.cache.get(key), None) for _, key, _ in keys]
    else:  # pragma: no cover - the two stores are the only ones
        msg = f"lock store {store!r} cannot be inspected"
        raise OperationError(msg)
    return [
        KeyState(kind, key, beside, task_id, ttl)
        for (kind, key, beside), (task_id, ttl) in zip(keys, found, strict=True)
    ]


def explain(task: DjangoTask, args: list[Any], kwargs: dict[str, Any]) -> Explanation:
    """Return the state of the call's lock and window, and what its next ``apply_async`` does.

    Raises:
        LockStoreUnavailableError: the store's Redis could not be reached.
    """
    states = {
        state.kind: state for state in _read(get_lock_store(), _call_keys(task, args, kwargs))
    }
    lock, window = states.get("unique"), states.get("ignore")
    # The order of the ADMIT script: an open window ignores the call before the lock is tried.
    if window is not None and window.task_id is not None:
        next_call = Outcome.IGNORED
    elif lock is not None and lock.task_id is not None:
        next_call = Outcome.UNIQUE
    else:
        next_call = Outcome.TRIGGER
    return Explanation(task.name, args, kwargs, lock, window, next_call)


def held(task_name: str | None = None) -> HeldPage:
    """Return every lock and open ignore window, soonest to expire first, and the bad entries.

    Args:
        task_name: only this task's.

    Raises:
        OperationError: the lock store's cache cannot list its keys (not Redis).
        LockStoreUnavailableError: the store's Redis could not be reached.

    .. versionchanged:: 0.2.0 Returns a :class:`HeldPage` (its cursor None), not a list.
    """
    return _redis_store("list locks and ignore windows").held(task_name)


def held_entry(task_name: str, kind: KeyKind, key: str, beside: str | None) -> HeldKey | None:
    """Return the held key of the index entry named by its task, kind, key and ``beside``.

    As the admin's list links to a call's Explain page: by its entry, not by its arguments.

    Returns:
        The held key, or None when the entry is gone (its key released or expired).

    Raises:
        OperationError: the lock store's cache cannot list its keys (not Redis), or the entry
            is bad (see :class:`BadEntry`).
        LockStoreUnavailableError: the store's Redis could not be reached.

    .. versionadded:: 0.2.0
    """
    found = _redis_store("read the index").entry(task_name, kind, key, beside)
    if isinstance(found, BadEntry):
        msg = f"index entry {found.entry!r} is bad: {found.problem}"
        raise OperationError(msg)
    return found


def release(
    task: DjangoTask, explanation: Explanation, *, lock: bool = True, window: bool = True
) -> list[KeyState]:
    """Remove the call's lock and/or window, each only if it still holds what ``explain`` read.

    A lock taken by another call after ``explanation`` was made is left alone (on the Redis
    store, atomically; on another cache, as far as a read then a delete allow).

    Returns:
        The keys removed.

    Raises:
        LockStoreUnavailableError: the store's Redis could not be reached.
    """
    store = get_lock_store()
    chosen = (explanation.lock if lock else None, explanation.window if window else None)
    return [
        state
        for state in chosen
        if state is not None and state.task_id is not None and _discard(store, state, task.name)
    ]


def held_page(
    cursor: str | None = None,
    *,
    task_name: str | None = None,
    kind: KeyKind | None = None,
    search: str | None = None,
    search_arguments: bool = True,
    size: int = PAGE_SIZE,
) -> HeldPage:
    """Return one page of the locks and open ignore windows, walked with ``SCAN``.

    See :meth:`RedisLockStore.held_page <celery_events.locks.listing.LockListing.held_page>`.

    Raises:
        OperationError: the lock store's cache cannot list its keys (not Redis), or ``cursor``
            is not one a page returned.
        LockStoreUnavailableError: the store's Redis could not be reached.
    """
    store = _redis_store("list locks and ignore windows")
    try:
        return store.held_page(
            cursor,
            task_name=task_name,
            kind=kind,
            search=search,
            search_arguments=search_arguments,
            size=size,
        )
    except ValueError as exc:
        msg = f"cursor {shown(str(cursor))} is {exc}"
        raise OperationError(msg) from exc


def discard(keys: Iterable[HeldKey]) -> list[HeldKey]:
    """Remove each key only while it still holds the task id it was read with.

    Returns:
        The keys removed; a key released, expired or taken by another call since is kept.

    Raises:
        LockStoreUnavailableError: the store's Redis could not be reached.
    """
    store = get_lock_store()
    return [key for key in keys if _discard(store, key, key.task_name)]


def release_task(task_name: str) -> list[HeldKey]:
    """Remove every lock and open ignore window of task ``task_name``, each owner-safe.

    Returns:
        The keys removed.

    Raises:
        OperationError: the lock store's cache cannot list its keys (not Redis).
        LockStoreUnavailableError: the store's Redis could not be reached.
    """
    return discard(_redis_store(f"release every key of task {task_name!r}").held(task_name).keys)


def _discard(store: LockStore, state: KeyState | HeldKey, task_name: str) -> bool:
    task_id = str(state.task_id)
    if isinstance(store, RedisLockStore):
        return store.discard(
            task_id=task_id,
            kind=state.kind,
            key=state.key,
            beside=state.beside,
            task_name=task_name,
        )
    assert isinstance(store, CacheLockStore)  # noqa: S101 - the two stores are the only ones
    if store.cache.get(state.key) != task_id:
        return False
    store.cache.delete(state.key)
    return True


def _redis_store(operation: str) -> RedisLockStore:
    store = get_lock_store()
    if not isinstance(store, RedisLockStore):
        msg = (
            f"cannot {operation}: cache {settings.CACHE_NAME!r} is not a Redis cache and cannot "
            "enumerate its keys; use explain and release with a task's arguments instead"
        )
        raise OperationError(msg)
    return store
