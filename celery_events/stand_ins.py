"""A stand-in's attempt: the outcome of the call it joined, or None, in place of a body run.

A call that a canvas or a callback waits on (a group, chord or chain member, a call with
``link`` or ``link_error``, a task id given in advance) is published even when its caller finds
it ignored or joined to a running call (:mod:`celery_events.caller`), so that its own task id
gets an outcome and what rides on its message goes on. Such a message carries the ``stand_in``
header, and its attempts never run the body unless the call it joined vanished:

- *ignored*: the attempt returns None; Celery stores SUCCESS with None and runs what follows.
- *joined to the holder H*: the attempt looks at H in the lock store. When H has ended, it
  returns H's value or raises H's exception (the outcome H left beside its lock, see
  :mod:`celery_events.outcomes`; the result backend's when H's was too large to keep), and
  Celery records and propagates it as the stand-in's own (group results, chord bodies, chain
  continuations, ``link`` and ``link_error``). While H holds its lock, the stand-in is *parked*
  beside it and this delivery ends with Celery's ``Ignore``: when H ends, whoever ends it
  publishes the parked stand-ins again (:func:`wake`), so they learn at once. A watch is
  published too, after a pause that grows from 2 s up to H's stale time limit
  (:func:`watch_delay`), in
  case H ends where nothing can wake them (its worker killed): when H's lock has expired with
  no outcome, the stand-in takes the lock and runs the body itself.

A stand-in's task id is completed once: of the deliveries that stand in for it (the woken one
and the watch, or one the broker delivered twice), the first to complete it does, and the
others end without an outcome (:meth:`~celery_events.locks.LockStore.complete_once`). A delivery
lost between that mark and Celery's storing of its result loses the completion: a stand-in's
task id is completed at most once.

The worker's gate (:mod:`celery_events.worker`) makes a stand-in of a message whose lock another
call holds, and of a second delivery of a message whose attempt still runs (it joins its own
task id, and ends without an outcome when that attempt ends; it runs the body if that attempt
died). A lock store or a result backend that cannot be reached delays a stand-in, never fails
it: it looks again after a pause (:data:`JOIN_CHECK_DELAYS`), with a warning. Eager stand-ins
wait in place instead of being parked. No attempt event (``task_start``...) is sent for a
stand-in that does not run the body: its outcome was on the bus when its caller sent
``invocation_unique`` or ``invocation_ignored``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Final, NoReturn

from celery.backends.base import DisabledBackend
from celery.exceptions import Ignore

from . import caller, outcomes
from .headers import (
    STALE_TIME_LIMIT_HEADER,
    STAND_IN_HEADER,
    UNIQUE_KEY_HEADER,
    invocation_id_of,
    read_header,
)
from .locks import Lease, LockStoreUnavailableError, get_lock_store

if TYPE_CHECKING:
    from collections.abc import Sequence

    from celery import Celery
    from celery.app.task import Context

    from .locks import Claim
    from .typing import CalledTask

__all__ = [
    "JOIN_CHECK_DELAYS",
    "PUBLISH_RETRY_POLICY",
    "StandInOutcome",
    "check_later",
    "claim",
    "is_stand_in_attempt",
    "new_lease",
    "outcome",
    "publish_again",
    "wake",
    "watch_delay",
]

logger: Final = logging.getLogger("celery_events")

JOIN_CHECK_DELAYS: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
"""Seconds before each look again at a lock store or result backend that could not be reached.

Also the first pauses of a parked stand-in's watch, which stop growing at the stale time limit
of the call it joined. The last one repeats.
"""

PUBLISH_RETRY_POLICY: Final = {
    "max_retries": 30,
    "interval_start": 0.5,
    "interval_step": 1,
    "interval_max": 10,
}
"""How long a stand-in's publish rides over a broker that cannot be reached: about 5 minutes."""

# Marks the request of an attempt that ended a stand-in without running the body. A Python
# object, not a header value: a caller's headers cannot make an attempt skip its events or its
# lock release.
_STAND_IN_ATTEMPT: Final = object()
_STAND_IN_ATTRIBUTE: Final = "_celery_events_stand_in"


class StandInOutcome:
    """How a stand-in's attempt ends in place of a body run: None, or its holder's outcome.

    Args:
        ended: how the call the stand-in joined ended; None for an ignored call.
    """

    __slots__ = ("_ended",)

    def __init__(self, ended: outcomes.CallOutcome | None) -> None:
        self._ended = ended

    def complete(self) -> Any:
        """Return the holder's value (None for an ignored call) or raise its exception.

        Raises:
            Exception: the exception the joined call failed with.
        """
        return None if self._ended is None else self._ended.complete()


def outcome(task: CalledTask, request: Context, stand_in: dict[str, Any]) -> StandInOutcome | None:
    """Return how a stand-in's attempt ends: the outcome of the call it stands for.

    Marks the request of an attempt that ends this way, so that it sends no attempt event
    (:func:`is_stand_in_attempt`).

    Args:
        task: the stand-in's task.
        request: the attempt's request.
        stand_in: the ``stand_in`` header: what the stand-in stands for, and its looks so far
            (a copy: the looks update it).

    Returns:
        The outcome; None when the call it joined ended and left none (its worker died), and
        the attempt may take the lock and run the body itself.

    Raises:
        celery.exceptions.Ignore: the stand-in was parked (the call it joined still runs), looks
            again later (the lock store or the result backend could not be reached), or ends
            without an outcome (another message of its task id completed it).
    """
    ended = StandInOutcome(None) if stand_in.get("ignored") else _join(task, request, stand_in)
    if ended is not None:
        setattr(request, _STAND_IN_ATTRIBUTE, _STAND_IN_ATTEMPT)
    return ended


def is_stand_in_attempt(request: Context) -> bool:
    """Return whether the attempt of ``request`` ended a stand-in without running the body."""
    return getattr(request, _STAND_IN_ATTRIBUTE, None) is _STAND_IN_ATTEMPT


def _join(task: CalledTask, request: Context, stand_in: dict[str, Any]) -> StandInOutcome | None:
    """Look at the holder until it has ended: return its outcome, or None if it left none."""
    unique_key: str = read_header(request, UNIQUE_KEY_HEADER)
    while True:
        holder = stand_in["holder"]
        waiter = None if request.is_eager else _waiter(task, request, stand_in)
        try:
            look = get_lock_store().look(
                unique_key=unique_key,
                task_id=holder,
                waiter=waiter,
                waiter_ttl=outcomes.kept_for(task),
                waiter_id=str(request.id),
            )
            if look.outcome is not None:
                ended = outcomes.decode(task, look.outcome) or _finished(task, holder)
                if ended is None:  # kept by the backend only, stored a moment after the end
                    _wait_or_watch(task, request, stand_in, JOIN_CHECK_DELAYS[0])
                    continue
            elif look.holder == holder:  # parked: woken when the holder ends
                _wait_or_watch(task, request, stand_in, watch_delay(request, stand_in["checks"]))
                continue
            else:  # it ended with no outcome beside its lock: the backend may know
                ended = _finished(task, holder)
            if ended is not None:  # the stand-in's own result is stored next: not into a void
                _reach_backend(task, request)
        except (LockStoreUnavailableError, _BackendUnavailableError) as exc:
            _again(task, request, stand_in, exc)
            continue
        if ended is not None:
            return _complete(task, request, unique_key, stand_in, ended)
        if look.holder is None:
            return None
        # Another call holds the lock now: the stand-in joins that one.
        stand_in.update(holder=look.holder, duplicate=False)


class _BackendUnavailableError(Exception):
    """The result backend could not be read."""


def _finished(task: CalledTask, holder: str) -> outcomes.CallOutcome | None:
    """Return the holder's outcome from the result backend; None while unknown there.

    Raises:
        _BackendUnavailableError: the backend could not be read.
    """
    conf = task.app.conf
    if isinstance(task.backend, DisabledBackend) or (
        conf.task_always_eager and not conf.task_store_eager_result
    ):  # no outcome is stored to read
        return None
    result = task.AsyncResult(holder)
    try:
        ready = result.ready()
    except Exception as exc:
        msg = f"result backend unreachable: {exc}"
        raise _BackendUnavailableError(msg) from exc
    return outcomes.from_result(result) if ready else None


def _complete(
    task: CalledTask,
    request: Context,
    unique_key: str,
    stand_in: dict[str, Any],
    ended: outcomes.CallOutcome,
) -> StandInOutcome:
    """End the stand-in with ``ended``, unless another message of its task id completed it.

    Raises:
        celery.exceptions.Ignore: the stand-in is a second delivery of a message whose attempt
            ran the body (that attempt completed the task id), or another of its messages
            completed it.
    """
    if stand_in.get("duplicate"):
        logger.info(
            "task %s[%s] of invocation %s: the delivery it waited for ended its call; this "
            "delivery ends without running",
            task.name,
            request.id,
            invocation_id_of(request),
        )
        raise Ignore
    try:
        first = get_lock_store().complete_once(
            unique_key=unique_key, task_id=str(request.id), ttl=outcomes.kept_for(task)
        )
    except LockStoreUnavailableError:
        # Completing twice is the lesser harm than never completing.
        logger.warning(
            "stand-in %s[%s] could not mark its completion; another delivery of it may "
            "complete it too",
            task.name,
            request.id,
            exc_info=True,
        )
        first = True
    if not first:
        logger.warning(
            "stand-in %s[%s] of invocation %s was completed by another delivery of it: this "
            "one ends without an outcome",
            task.name,
            request.id,
            invocation_id_of(request),
        )
        raise Ignore
    return StandInOutcome(ended)


def _reach_backend(task: CalledTask, request: Context) -> None:
    """Make sure the result backend answers, before the stand-in completes into it.

    Raises:
        _BackendUnavailableError: the backend could not be read.
    """
    if isinstance(task.backend, DisabledBackend) or request.is_eager:
        return
    try:
        task.AsyncResult(str(request.id)).state  # noqa: B018 - a read, to reach the backend
    except Exception as exc:
        msg = f"result backend unreachable: {exc}"
        raise _BackendUnavailableError(msg) from exc


def claim(task: CalledTask, request: Context, unique_key: str, lease: Lease) -> Claim:
    """Claim the lock and the lease for the attempt, for the call's stale time limit.

    Raises:
        LockStoreUnavailableError: the lock store's Redis could not be reached.
    """
    return get_lock_store().claim(
        task_id=str(request.id),
        unique_key=unique_key,
        lease=lease,
        task_name=task.name,
        arguments=(request.args, request.kwargs),
    )


def new_lease(request: Context, unique_key: str) -> Lease:
    """Return a lease for the attempt of ``request``, as long as the call's stale time limit."""
    return Lease(
        unique_key=unique_key,
        task_id=str(request.id),
        token=uuid.uuid4().hex,
        ttl=float(read_header(request, STALE_TIME_LIMIT_HEADER)),
    )


def watch_delay(request: Context, checks: int) -> float:
    """Return the pause before a parked stand-in looks again at the call it joined.

    A call that ends wakes its stand-ins at once, and one whose worker died leaves its lock up to
    its stale time limit: a parked stand-in's watch comes after 2 s, then twice as long each
    time, up to that limit, so that it costs fewer messages than looking at a running call. An
    eager stand-in, which waits in place, looks after the pauses of :data:`JOIN_CHECK_DELAYS`.
    """
    delay = JOIN_CHECK_DELAYS[min(checks, len(JOIN_CHECK_DELAYS) - 1)]
    if request.is_eager:
        return delay
    limit = float(read_header(request, STALE_TIME_LIMIT_HEADER) or delay)
    return max(delay, min(2.0 ** (checks + 1), limit))


def _wait_or_watch(
    task: CalledTask, request: Context, stand_in: dict[str, Any], delay: float
) -> None:
    """Wait ``delay`` seconds here (an eager stand-in), or publish a watch and end here.

    Raises:
        celery.exceptions.Ignore: the watch was published.
    """
    stand_in["checks"] += 1
    if request.is_eager:
        time.sleep(delay)
        return
    check_later(task, request, dict(stand_in), delay)


def _again(task: CalledTask, request: Context, stand_in: dict[str, Any], exc: Exception) -> None:
    """Look again after a pause: here for an eager stand-in, else from a message published again.

    Raises:
        celery.exceptions.Ignore: the message was published again.
    """
    delay = JOIN_CHECK_DELAYS[min(stand_in["checks"], len(JOIN_CHECK_DELAYS) - 1)]
    logger.warning(
        "stand-in %s[%s] of invocation %s could not look at %s (%s): it looks again in %s s",
        task.name,
        request.id,
        invocation_id_of(request),
        stand_in["holder"],
        exc,
        delay,
    )
    _wait_or_watch(task, request, stand_in, delay)


def _waiter(task: CalledTask, request: Context, stand_in: dict[str, Any]) -> bytes:
    """Return the stand-in as it is parked: its message, to publish again when woken."""
    return outcomes.pack(task, _republished(task, request, {STAND_IN_HEADER: stand_in}, None))


def _republished(
    task: CalledTask, request: Context, headers: dict[str, Any], countdown: float | None
) -> dict[str, Any]:
    """Return the attempt's message again, ``headers`` over its own: task, arguments, options."""
    # The same task id, callbacks, chain, chord and group; no expiry, as nothing runs.
    signature = task.signature_from_request(
        request, countdown=countdown, expires=None, headers={**(request.headers or {}), **headers}
    )
    return {
        "task": signature.task,
        "args": list(signature.args),
        "kwargs": dict(signature.kwargs),
        "options": dict(signature.options),
    }


def check_later(
    task: CalledTask, request: Context, stand_in: dict[str, Any], delay: float
) -> NoReturn:
    """Publish the attempt's message again as a stand-in that looks after ``delay`` s; end here.

    Raises:
        celery.exceptions.Ignore: always, once published: Celery acknowledges the message and
            stores nothing.
    """
    publish_again(task, request, {STAND_IN_HEADER: stand_in}, delay)


def publish_again(
    task: CalledTask, request: Context, headers: dict[str, Any], delay: float
) -> NoReturn:
    """Publish the attempt's message again, ``headers`` over its own, after ``delay`` s; end here.

    The publish rides over a broker that cannot be reached for a while
    (:data:`PUBLISH_RETRY_POLICY`), so that the message is not lost.

    Raises:
        celery.exceptions.Ignore: always, once published.
    """
    _publish(task.app, _republished(task, request, headers, countdown=delay))
    raise Ignore


def wake(app: Celery, waiting: Sequence[bytes]) -> None:
    """Publish again the stand-ins parked beside a call that has ended.

    A stand-in that cannot be published is logged: its watch looks for it later.

    Args:
        app: the Celery app.
        waiting: the parked stand-ins, as :meth:`~celery_events.locks.LockStore.release`
            returned them.
    """
    for parked in waiting:
        _wake_one(app, parked)


def _wake_one(app: Celery, parked: bytes) -> None:
    try:
        _publish(app, outcomes.unpack(app, parked))
    except Exception:
        logger.exception("could not wake a parked stand-in; its watch looks for it later")


def _publish(app: Celery, message: dict[str, Any]) -> None:
    """Publish a stand-in's message as Celery's own ``apply_async`` does, bypassing admission."""
    caller.hand_over(
        app.tasks[message["task"]],
        message["args"],
        message["kwargs"],
        is_async=True,
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
        **message["options"],
    )
