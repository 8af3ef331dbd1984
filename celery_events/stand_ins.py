"""A stand-in's attempt: the outcome of the call it joined, or None, in place of a body run.

A call that a canvas or a callback waits on (a group, chord or chain member, a call with
``link`` or ``link_error``, a task id given in advance) is published even when its caller finds
it ignored or joined to a running call (:mod:`celery_events.caller`), so that its own task id
gets an outcome and what rides on its message goes on. Such a message carries the ``stand_in``
header, and its attempts never run the body unless the call it joined vanished:

- *ignored*: the attempt returns None; Celery stores SUCCESS with None and runs what follows.
- *joined to the holder H*: when H has finished, the attempt returns H's value or raises H's
  exception, and Celery records and propagates it as the stand-in's own (group results, chord
  bodies, chain continuations, ``link`` and ``link_error``). While H runs, the message is
  published again after a pause (:data:`JOIN_CHECK_DELAYS`) and this delivery ends with Celery's
  ``Ignore``. When H's lock is gone and H left no outcome (its worker died and the lock expired),
  the stand-in takes the lock; if H's outcome is still missing at the next check, it runs the
  body itself. Eager stand-ins wait in place instead of re-publishing.

A message whose lock another call holds when its attempt starts becomes such a stand-in too
(the gate of :mod:`celery_events.worker`). No attempt event (``task_start``...) is sent for a
stand-in that does not run the body: its outcome was on the bus when its caller sent
``invocation_unique`` or ``invocation_ignored``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final, NoReturn

from celery.backends.base import DisabledBackend
from celery.exceptions import Ignore

from .headers import (
    STALE_TIME_LIMIT_HEADER,
    STAND_IN_HEADER,
    UNIQUE_KEY_HEADER,
    invocation_id_of,
    read_header,
)
from .locks import get_lock_store, release_lock

if TYPE_CHECKING:
    from celery.app.task import Context
    from celery.result import AsyncResult

    from .locks import Claim
    from .typing import CalledTask

__all__ = [
    "JOIN_CHECK_DELAYS",
    "StandInOutcome",
    "check_later",
    "claim",
    "is_stand_in_attempt",
    "outcome",
]

logger: Final = logging.getLogger("celery_events")

JOIN_CHECK_DELAYS: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
"""Seconds a joined stand-in waits before each check of its holder; the last one repeats."""

# Marks the request of an attempt that ended a stand-in without running the body. A Python
# object, not a header value: a caller's headers cannot make an attempt skip its events or its
# lock release.
_STAND_IN_ATTEMPT: Final = object()
_STAND_IN_ATTRIBUTE: Final = "_celery_events_stand_in"


class StandInOutcome:
    """How a stand-in's attempt ends in place of a body run: None, or its holder's outcome.

    Args:
        holder: the finished result of the call the stand-in joined; None for an ignored call.
    """

    __slots__ = ("_holder",)

    def __init__(self, holder: AsyncResult[Any] | None) -> None:
        self._holder = holder

    def complete(self) -> Any:
        """Return the holder's value (None for an ignored call) or raise its exception.

        Raises:
            Exception: the exception the joined call failed with.
        """
        if self._holder is None:
            return None
        # The result is ready: get() reads what ready() fetched and never blocks.
        return self._holder.get(propagate=True, disable_sync_subtasks=False)


def outcome(task: CalledTask, request: Context, stand_in: dict[str, Any]) -> StandInOutcome | None:
    """Return how a stand-in's attempt ends: its holder's outcome, or None to run the body.

    Marks the request of an attempt that ends without running the body, so that it sends no
    attempt event (:func:`is_stand_in_attempt`).

    Args:
        task: the stand-in's task.
        request: the attempt's request.
        stand_in: the ``stand_in`` header: what the stand-in stands for, and its checks so far.

    Raises:
        celery.exceptions.Ignore: the holder still runs; the stand-in was published again to
            check later.
        LockStoreUnavailableError: the lock store's Redis could not be reached.
    """
    ended = _outcome(task, request, stand_in)
    if ended is not None:
        setattr(request, _STAND_IN_ATTRIBUTE, _STAND_IN_ATTEMPT)
    return ended


def _outcome(task: CalledTask, request: Context, stand_in: dict[str, Any]) -> StandInOutcome | None:
    if stand_in.get("ignored"):
        return StandInOutcome(None)
    unique_key = read_header(request, UNIQUE_KEY_HEADER)
    while True:
        holder = stand_in["holder"]
        finished = _finished(task, holder)
        if finished is not None:
            if stand_in.get("claimed"):  # taken at the last check: the outcome came after all
                release_lock(request.id, unique_key, task.name)
            return StandInOutcome(finished)
        taken = claim(task, request, unique_key)
        if taken.holder == request.id and stand_in.get("claimed"):
            logger.warning(
                "task %s[%s] of invocation %s joined %s, which left its lock without an "
                "outcome: it runs the body itself",
                task.name,
                request.id,
                invocation_id_of(request),
                holder,
            )
            return None
        stand_in = {
            "holder": holder if taken.holder == request.id else taken.holder,
            "checks": stand_in.get("checks", 0) + 1,
            "claimed": taken.holder == request.id,
        }
        if not request.is_eager:
            check_later(task, request, stand_in)
        time.sleep(_join_check_delay(stand_in["checks"]))


def is_stand_in_attempt(request: Context) -> bool:
    """Return whether the attempt of ``request`` ended a stand-in without running the body."""
    return getattr(request, _STAND_IN_ATTRIBUTE, None) is _STAND_IN_ATTEMPT


def _finished(task: CalledTask, holder: str) -> AsyncResult[Any] | None:
    """Return the holder's result when it has finished; None while it runs or is unknown."""
    conf = task.app.conf
    if isinstance(task.backend, DisabledBackend) or (
        conf.task_always_eager and not conf.task_store_eager_result
    ):  # no outcome is stored to read
        return None
    result = task.AsyncResult(holder)
    return result if result.ready() else None


def claim(task: CalledTask, request: Context, unique_key: str) -> Claim:
    """Claim the lock for the attempt, for the call's stale time limit (it came with the key).

    Raises:
        LockStoreUnavailableError: the lock store's Redis could not be reached.
    """
    return get_lock_store().claim(
        task_id=str(request.id),
        unique_key=unique_key,
        lock_ttl=float(read_header(request, STALE_TIME_LIMIT_HEADER)),
        task_name=task.name,
        arguments=(request.args, request.kwargs),
    )


def _join_check_delay(checks: int) -> float:
    return JOIN_CHECK_DELAYS[min(checks, len(JOIN_CHECK_DELAYS) - 1)]


def check_later(task: CalledTask, request: Context, stand_in: dict[str, Any]) -> NoReturn:
    """Publish the attempt's message again as a stand-in checked after a pause; end this one.

    Raises:
        celery.exceptions.Ignore: always, once published: Celery acknowledges the message and
            stores nothing.
    """
    headers = {**(request.headers or {}), STAND_IN_HEADER: stand_in}
    # The same task id, callbacks, chain, chord and group; no expiry, as nothing runs.
    task.signature_from_request(
        request,
        countdown=_join_check_delay(stand_in["checks"]),
        expires=None,
        headers=headers,
    ).apply_async()
    raise Ignore
