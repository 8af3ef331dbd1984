"""The worker's way of one DjangoTask attempt, top to bottom: gate, body, retry, settle.

:func:`run_attempt` is what ``DjangoTask.__call__`` runs for each attempt, where the task runs
(a worker, or the caller for ``apply()`` and eager calls).

**The gate.** When an attempt of a unique task starts on a worker, one round trip to the lock
store (:meth:`~celery_events.locks.LockStore.claim`) checks that the lock holds the message's
task id. A lock that expired while the message waited (a redelivery after the whole worker died,
a retry that outlived it) is taken again; a lock that another call holds means the body must not
run, and the message becomes a stand-in that joins that call. So two bodies of one unique key
never run at once, whatever the broker redelivers. Eager runs skip the check: their caller took
the lock a moment before, in the same thread.

**Stand-ins.** A message that stands in for a call that joined another or was ignored (a canvas
member's, :mod:`celery_events.stand_ins`) ends with that call's outcome, or None, without running
the body; so does a message that finds its lock held by another call, which becomes one.

**The body, retries and settling.** An attempt that passes the gate sends ``task_start`` and
runs the body under its lease. A retry is published with the call's headers, so the next
attempt is the same call (:mod:`celery_events.retries`). The attempt that ends a call releases
its lock, leaves its outcome and wakes whoever joined it, and after a success opens its ignore
window, before Celery stores the result (:func:`settle`): whoever sees the result can call the
task again at once. ``task_retry``, ``task_failure`` and
``task_success`` are sent from Celery's handlers (:func:`send_task_event`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, NoReturn

from celery.canvas import Signature
from celery.exceptions import Ignore, Reject, Retry

from . import outcomes, signals, stand_ins, windows
from .durations import positive_seconds
from .headers import (
    CARRIED_HEADERS,
    LOCK_CHECKS_HEADER,
    STAND_IN_HEADER,
    UNIQUE_KEY_HEADER,
    invocation_id_of,
    read_header,
    stand_in_header,
)
from .locks import Lease, LockStoreUnavailableError, get_lock_store
from .locks.leases import keeper

if TYPE_CHECKING:
    from collections.abc import Callable

    from celery.app.task import Context

    from .locks import Claim
    from .typing import CalledTask

__all__ = [
    "admit_attempt",
    "hand_over",
    "run_attempt",
    "send_task_event",
    "settle",
    "settle_lost",
    "step_out",
]

logger: Final = logging.getLogger("celery_events")

# The attempt's lease, and whether a replace() handed its call over: Python objects on the
# request, which a caller's headers cannot forge.
_LEASE_ATTRIBUTE: Final = "_celery_events_lease"
_HANDED_OVER_ATTRIBUTE: Final = "_celery_events_handed_over"


def run_attempt(task: CalledTask, request: Context, args: Any, kwargs: Any) -> Any:
    """Run one attempt: the gate, ``task_start``, the body under its lease, and the settling.

    Args:
        task: the task whose attempt starts.
        request: the attempt's request.
        args: the body's positional arguments.
        kwargs: the body's keyword arguments.

    Returns:
        The body's return value, or a stand-in's outcome.

    Raises:
        celery.exceptions.Ignore: the body does not run here: the attempt was parked, published
            again to look later, or is a late delivery of a call that ended.
        Exception: whatever the body raised, after the call was settled (unless it retries).
    """
    ended = admit_attempt(task, request)
    if ended is not None:
        return ended.complete()
    _start(task, request, args, kwargs)
    lease: Lease | None = getattr(request, _LEASE_ATTRIBUTE, None)
    try:
        retval = task.run(*args, **kwargs)
    except Retry:  # the retry stepped out before it was published (DjangoTask.retry)
        raise
    except Ignore:
        if not getattr(request, _HANDED_OVER_ATTRIBUTE, False):  # a replace() handed it over
            settle(task, request, None)
        raise
    except Reject as reject:
        if getattr(reject, "requeue", False):  # celery-types lacks "requeue"
            step_out(task, request, 0.0)
        else:
            settle(task, request, None)
        raise
    except Exception as exc:
        settle(task, request, outcomes.CallOutcome(succeeded=False, value=exc))
        raise
    except BaseException:  # the process stops (SystemExit...): the call's outcome is unknown
        settle(task, request, None)
        raise
    finally:
        if lease is not None:
            keeper.drop(lease)
    settle(task, request, outcomes.CallOutcome(succeeded=True, value=retval))
    return retval


def _start(task: CalledTask, request: Context, args: Any, kwargs: Any) -> None:
    event = (request.id, args, kwargs)
    send_task_event(task, signals.task_start, task.on_task_start, request, event)


def admit_attempt(task: CalledTask, request: Context) -> stand_ins.StandInOutcome | None:
    """Decide whether the attempt that starts runs the body: None when it does, under a lease.

    A stand-in ends with the outcome of the call it stands for. A unique call's attempt claims
    its lock and takes the lease the keeper renews while the body runs; when another call holds
    the lock, or another delivery of the same message runs its body, the attempt joins it as a
    stand-in. A lock store that cannot be reached delays the attempt: its message is published
    again to try later.

    Returns:
        How the attempt ends instead, for a stand-in whose outcome is known.

    Raises:
        celery.exceptions.Ignore: the body does not run here (see :func:`run_attempt`).
    """
    stand_in = read_header(request, STAND_IN_HEADER)
    if stand_in is not None:
        ended = stand_ins.outcome(task, request, dict(stand_in))
        if ended is not None:
            return ended
        logger.warning(
            "task %s[%s] of invocation %s joined %s, which ended with no outcome (its worker "
            "died, or it ended without one): it runs the body itself",
            task.name,
            request.id,
            invocation_id_of(request),
            stand_in.get("holder"),
        )
    unique_key = read_header(request, UNIQUE_KEY_HEADER)
    if unique_key is None or request.is_eager:
        return None
    while True:
        lease = stand_ins.new_lease(request, unique_key)
        try:
            claim = stand_ins.claim(task, request, unique_key, lease)
        except LockStoreUnavailableError as exc:
            _look_later(task, request, exc)
        if claim.ended:
            logger.warning(
                "task %s[%s] of invocation %s was delivered again after its call ended: it "
                "does not run again",
                task.name,
                request.id,
                invocation_id_of(request),
            )
            raise Ignore
        if claim.holder == request.id and not claim.elsewhere:
            break
        ended = _join(task, request, claim)
        if ended is not None:
            return ended
    if claim.taken and stand_in is None:  # a stand-in said so when its holder was gone
        logger.warning(
            "task %s[%s] of invocation %s found its unique lock free (expired or released "
            "while the message waited) and took it again",
            task.name,
            request.id,
            invocation_id_of(request),
        )
    setattr(request, _LEASE_ATTRIBUTE, lease)
    keeper.hold(lease)
    return None


def _join(task: CalledTask, request: Context, claim: Claim) -> stand_ins.StandInOutcome | None:
    """Make the attempt a stand-in of the call that holds its lock, or of its own running twin.

    Returns:
        The outcome to end with; None when that call ended with none (the lock is free again).

    Raises:
        celery.exceptions.Ignore: the stand-in was parked, or ends without an outcome.
    """
    if claim.elsewhere:
        logger.warning(
            "task %s[%s] of invocation %s was delivered again while an attempt of it runs the "
            "body: it waits for that attempt, and runs the body only if that attempt dies",
            task.name,
            request.id,
            invocation_id_of(request),
        )
    else:
        logger.warning(
            "task %s[%s] of invocation %s found its unique lock held by %s: it does not run, "
            "and gets the outcome of %s",
            task.name,
            request.id,
            invocation_id_of(request),
            claim.holder,
            claim.holder,
        )
    stand_in = {**stand_in_header(claim.holder), "duplicate": claim.elsewhere}
    return stand_ins.outcome(task, request, stand_in)


def _look_later(task: CalledTask, request: Context, exc: LockStoreUnavailableError) -> NoReturn:
    """Publish the attempt's message again to claim its lock after a pause; end here.

    Raises:
        celery.exceptions.Ignore: always, once published.
    """
    looks = int(read_header(request, LOCK_CHECKS_HEADER) or 0)
    delay = stand_ins.JOIN_CHECK_DELAYS[min(looks, len(stand_ins.JOIN_CHECK_DELAYS) - 1)]
    logger.warning(
        "task %s[%s] of invocation %s could not claim its unique lock (%s): it does not run "
        "unchecked, and tries again in %s s",
        task.name,
        request.id,
        invocation_id_of(request),
        exc,
        delay,
    )
    stand_ins.publish_again(task, request, {LOCK_CHECKS_HEADER: looks + 1}, delay)


def hand_over(task: CalledTask, request: Context, replacement: Any) -> None:
    """Before ``replace()``: a replacement that is the same call keeps the call's lock.

    The replacement (a signature of the same task whose arguments have the same unique key)
    gets the call's headers, so that its attempt claims the lock that this attempt leaves it,
    and this attempt's lease is dropped before the replacement is published. Another
    replacement leaves the lock to be freed as the attempt ends.

    Args:
        task: the task whose attempt is replaced.
        request: the attempt's request.
        replacement: the signature that replaces it.
    """
    unique_key = read_header(request, UNIQUE_KEY_HEADER)
    if (
        unique_key is None
        or not isinstance(replacement, Signature)
        or replacement.task != task.name
        or task._get_unique_key(replacement.args, replacement.kwargs) != unique_key  # noqa: SLF001 - the key seam
    ):
        return
    headers = {name: read_header(request, name) for name in CARRIED_HEADERS}
    replacement.set(headers={**replacement.options.get("headers", {}), **headers})
    setattr(request, _HANDED_OVER_ATTRIBUTE, True)
    step_out(task, request, 0.0)


def step_out(task: CalledTask, request: Context, delay: float) -> None:
    """Drop the attempt's lease and keep the call's lock for its next attempt, ``delay`` s away.

    For an attempt that ends without ending its call (a retry, a replace by the same call, a
    requeue). A lock store error is logged, not raised: the lock then lives its stale time
    limit, and the next attempt's gate takes it again if it is free.
    """
    lease: Lease | None = getattr(request, _LEASE_ATTRIBUTE, None)
    if lease is None:
        return
    keeper.drop(lease)
    try:
        get_lock_store().step_out(lease, lease.ttl + max(delay, 0.0))
    except Exception:
        logger.exception(
            "could not keep the unique lock of task %s[%s] for its next attempt; it lives its "
            "stale time limit",
            task.name,
            request.id,
        )


def settle(task: CalledTask, request: Context, ended: outcomes.CallOutcome | None) -> None:
    """End the call: free its lock, leave its outcome, wake its stand-ins, open its window.

    The outcome is left beside the lock for whoever joined the call, in the same round trip
    that frees the lock, and the stand-ins parked beside it are published again. After a
    success, the ignore window opens. A lock store error is logged, not raised: it must neither
    hide the task's own exception nor turn a success into a failure and lose its result. The
    lock then expires after its stale time limit, and no ignore window opens.

    Args:
        task: the task whose call ends.
        request: the last attempt's request.
        ended: how the call ended; None when it ended with no outcome to tell.
    """
    try:
        unique_key: str | None = read_header(request, UNIQUE_KEY_HEADER)
        if unique_key is None:
            # A message that django-celery-extensions published (during a rolling upgrade)
            # carries no key; its lock has the same key and holds this task id, and a release
            # is owner-checked: it frees nothing another call holds.
            unique_key = task._get_unique_key(request.args, request.kwargs)  # noqa: SLF001 - the task's key seam
        ignore_key = ignore_ttl = None
        if ended is not None and ended.succeeded and windows.opens_after_success(task, request):
            ignore_key = windows.ignore_key_of(task, request)
            ignore_ttl = positive_seconds(
                task.ignore_task_timedelta, f"ignore_task_timedelta of task {task.name!r}"
            )
        if unique_key is None and ignore_key is None:
            return
        record = None if ended is None or unique_key is None else outcomes.encode(task, ended)
        waiting = get_lock_store().release(
            task_id=str(request.id),
            unique_key=unique_key,
            ignore_key=ignore_key,
            ignore_ttl=ignore_ttl,
            task_name=task.name,
            arguments=(request.args, request.kwargs),
            outcome=record,
            outcome_ttl=outcomes.kept_for(task),
        )
        stand_ins.wake(task.app, waiting)
    except Exception:
        logger.exception(
            "could not settle the unique lock and ignore window of task %s[%s]; "
            "the lock expires on its own",
            task.name,
            request.id,
        )


def settle_lost(task: CalledTask, task_id: str, unique_key: object, exc: BaseException) -> None:
    """End the call of an attempt that could not settle it: lost, killed, revoked.

    Called in the worker's main process (:mod:`celery_events.request`, and the cleanup of
    ``celery_events.cleanup``): frees the lock if the task id holds it, leaves the failure
    ``exc`` as the call's outcome for whoever joined it, and wakes them.

    Args:
        task: the task of the attempt.
        task_id: its task id.
        unique_key: the unique key its message carries (anything else: nothing to end).
        exc: what ended it (``WorkerLostError``, ``TimeLimitExceeded``, ``TaskRevokedError``).

    Raises:
        LockStoreUnavailableError: the store's Redis could not be reached.
    """
    if not isinstance(unique_key, str):
        return
    waiting = get_lock_store().release(
        task_id=task_id,
        unique_key=unique_key,
        ignore_key=None,
        ignore_ttl=None,
        task_name=task.name,
        outcome=outcomes.encode(task, outcomes.CallOutcome(succeeded=False, value=exc)),
        outcome_ttl=outcomes.kept_for(task),
    )
    stand_ins.wake(task.app, waiting)


def send_task_event(
    task: CalledTask,
    signal: signals.EventSignal,
    hook: Callable[..., None],
    request: Context,
    values: tuple[Any, ...],
) -> None:
    """Call the task hook with ``values``, then send its signal with the invocation id too.

    Nothing is sent for an attempt that ended a stand-in without running the body: its outcome
    was on the bus when its caller joined or was ignored.

    Args:
        task: the task whose attempt the event is about.
        signal: the event's signal.
        hook: the task's hook method of the same name.
        request: the attempt's request, which tells the call's invocation id.
        values: the hook's arguments.
    """
    if stand_ins.is_stand_in_attempt(request):
        return
    hook(*values)
    if signal.receivers:
        signal.emit(task, invocation_id_of(request), *values)
