"""Where a DjangoTask runs: the gate at the start of each attempt, stand-ins, and settling.

**The gate.** When an attempt of a unique task starts on a worker, one round trip to the lock
store (:meth:`~celery_events.locks.LockStore.claim`) checks that the lock holds the message's
task id. A lock that expired while the message waited (a redelivery after the whole worker died,
a retry that outlived it) is taken again; a lock that another call holds means the body must not
run, and the message becomes a stand-in that joins that call. So two bodies of one unique key
never run at once, whatever the broker redelivers. Eager runs skip the check: their caller took
the lock a moment before, in the same thread.

**Stand-ins.** A call that a canvas or a callback waits on (a group, chord or chain member, a call
with ``link`` or ``link_error``, a task id given in advance) is published even when its caller
finds it ignored or joined to a running call, so that its own task id gets an outcome and what
rides on its message goes on. Such a message carries the ``stand_in`` header, and its attempts
never run the body unless the call it joined vanished:

- *ignored*: the attempt returns None; Celery stores SUCCESS with None and runs what follows.
- *joined to the holder H*: when H has finished, the attempt returns H's value or raises H's
  exception, and Celery records and propagates it as the stand-in's own (group results, chord
  bodies, chain continuations, ``link`` and ``link_error``). While H runs, the message is
  published again after a pause (:data:`JOIN_CHECK_DELAYS`) and this delivery ends with Celery's
  ``Ignore``. When H's lock is gone and H left no outcome (its worker died and the lock expired),
  the stand-in takes the lock; if H's outcome is still missing at the next check, it runs the
  body itself. Eager stand-ins wait in place instead of re-publishing.

No attempt event (``task_start``...) is sent for a stand-in that does not run the body: its
outcome was on the bus when its caller sent ``invocation_unique`` or ``invocation_ignored``.

**Settling.** The attempt that ends a call releases its lock, and after a success opens its
ignore window, before Celery stores the result (:func:`settle`).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn

from celery.backends.base import DisabledBackend
from celery.exceptions import Ignore
from django.utils import timezone

from .cleanup import release_lock
from .durations import positive_seconds
from .headers import (
    IGNORE_AFTER_SUCCESS_HEADER,
    IGNORE_KEY_HEADER,
    INVOCATION_ID_HEADER,
    STALE_TIME_LIMIT_HEADER,
    STAND_IN_HEADER,
    TRIGGER_TIME_HEADER,
    UNIQUE_KEY_HEADER,
    read_header,
)
from .locks import get_lock_store

if TYPE_CHECKING:
    from billiard.einfo import ExceptionInfo
    from celery.app.task import Context
    from celery.result import AsyncResult

    from .locks import Claim
    from .task import DjangoTask

__all__ = [
    "JOIN_CHECK_DELAYS",
    "StandInOutcome",
    "admit_attempt",
    "ignore_key_of",
    "invocation_id_of",
    "is_stand_in_attempt",
    "queue_wait",
    "retry_eta",
    "settle",
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


def admit_attempt(task: DjangoTask, request: Context) -> StandInOutcome | None:
    """Decide whether the attempt that starts runs the body: None when it does.

    Returns:
        How the attempt ends instead, for a stand-in whose outcome is known.

    Raises:
        celery.exceptions.Ignore: the attempt was published again to check later (a stand-in
            whose holder still runs, or a message whose lock another call holds).
        LockStoreUnavailableError: the lock store's Redis could not be reached.
    """
    stand_in = read_header(request, STAND_IN_HEADER)
    if stand_in is not None:
        outcome = _stand_in_outcome(task, request, dict(stand_in))
        if outcome is not None:
            setattr(request, _STAND_IN_ATTRIBUTE, _STAND_IN_ATTEMPT)
        return outcome
    unique_key = read_header(request, UNIQUE_KEY_HEADER)
    if unique_key is None or request.is_eager:
        return None
    claim = _claim(task, request, unique_key)
    if claim.holder != request.id:
        logger.warning(
            "task %s[%s] of invocation %s found its unique lock held by %s: it does not run, "
            "and gets the outcome of %s",
            task.name,
            request.id,
            invocation_id_of(request),
            claim.holder,
            claim.holder,
        )
        _check_later(task, request, {"holder": claim.holder, "checks": 0})
    if claim.taken:
        logger.warning(
            "task %s[%s] of invocation %s found its unique lock free (expired or released "
            "while the message waited) and took it again",
            task.name,
            request.id,
            invocation_id_of(request),
        )
    return None


def is_stand_in_attempt(request: Context) -> bool:
    """Return whether the attempt of ``request`` ended a stand-in without running the body."""
    return getattr(request, _STAND_IN_ATTRIBUTE, None) is _STAND_IN_ATTEMPT


def _stand_in_outcome(
    task: DjangoTask, request: Context, stand_in: dict[str, Any]
) -> StandInOutcome | None:
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
        claim = _claim(task, request, unique_key)
        if claim.holder == request.id and stand_in.get("claimed"):
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
            "holder": holder if claim.holder == request.id else claim.holder,
            "checks": stand_in.get("checks", 0) + 1,
            "claimed": claim.holder == request.id,
        }
        if not request.is_eager:
            _check_later(task, request, stand_in)
        time.sleep(_join_check_delay(stand_in["checks"]))


def _finished(task: DjangoTask, holder: str) -> AsyncResult[Any] | None:
    """Return the holder's result when it has finished; None while it runs or is unknown."""
    conf = task.app.conf
    if isinstance(task.backend, DisabledBackend) or (
        conf.task_always_eager and not conf.task_store_eager_result
    ):  # no outcome is stored to read
        return None
    result = task.AsyncResult(holder)
    return result if result.ready() else None


def _claim(task: DjangoTask, request: Context, unique_key: str) -> Claim:
    """Claim the lock for the attempt, for the call's stale time limit (it came with the key)."""
    return get_lock_store().claim(
        task_id=str(request.id),
        unique_key=unique_key,
        lock_ttl=float(read_header(request, STALE_TIME_LIMIT_HEADER)),
        task_name=task.name,
        arguments=(request.args, request.kwargs),
    )


def _join_check_delay(checks: int) -> float:
    return JOIN_CHECK_DELAYS[min(checks, len(JOIN_CHECK_DELAYS) - 1)]


def _check_later(task: DjangoTask, request: Context, stand_in: dict[str, Any]) -> NoReturn:
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


def invocation_id_of(request: Context) -> str:
    """Return the invocation id of the running attempt's call: its header, else its task id.

    A call's invocation id is its task id unless the caller named the invocation (then the
    message carries it in a header); a message from a producer that is not a DjangoTask has
    none, and its task id, kept across retries, serves.

    Args:
        request: the running attempt's request.
    """
    return str(read_header(request, INVOCATION_ID_HEADER) or request.id)


def ignore_key_of(task: DjangoTask, request: Context) -> str:
    """Return the ignore window's key of the running attempt's call."""
    ignore_key: str | None = read_header(request, IGNORE_KEY_HEADER)
    if ignore_key is None:  # published by something other than a DjangoTask
        ignore_key = task._get_ignore_key(request.args, request.kwargs)  # noqa: SLF001 - the task's key seam
    return ignore_key


def queue_wait(request: Context, now: float) -> float | None:
    """Return how long the attempt's message waited before the attempt started, in seconds.

    The wait is counted from the message's ``eta`` when it has one (a countdown, a retry),
    else from when it was sent (:data:`~celery_events.headers.TRIGGER_TIME_HEADER`). The two
    clocks are those of the sender's and the worker's machines: a wait that their skew makes
    negative is 0.

    Args:
        request: the starting attempt's request.
        now: the attempt's start, as ``time.time()``.

    Returns:
        The wait; None for an eager attempt, which waited in no queue, and for a message that
        tells neither (one from a producer that is not a DjangoTask, without an eta).
    """
    if request.is_eager:
        return None
    since: Any = request.eta or read_header(request, TRIGGER_TIME_HEADER)
    if since is None:
        return None
    if isinstance(since, str):  # an eta, or django-celery-extensions' trigger time
        since = datetime.fromisoformat(since)
    if isinstance(since, datetime):
        since = since.timestamp()
    return max(now - float(since), 0.0)


def retry_eta(einfo: ExceptionInfo) -> datetime:
    """Return when the retry described by ``einfo`` (a Retry, wrapped by billiard) is due."""
    retry = getattr(einfo.exception, "exc", einfo.exception)
    when = getattr(retry, "when", None)
    if isinstance(when, datetime):
        return when
    return timezone.now() + timedelta(seconds=float(when or 0))


def _opens_ignore_window(task: DjangoTask, request: Context) -> bool:
    """Return whether the call's success opens its ignore window.

    It does for a task that ignores after success, and for a call that asked to
    (``ignore_task_after_success=True``). A call's ``False`` only spares it the check: its
    success still opens the task's window, as with django-celery-extensions.
    """
    asked: bool | None = read_header(request, IGNORE_AFTER_SUCCESS_HEADER)
    ignores = task.ignore_task_after_success or asked is True
    return ignores and task.ignore_task_timedelta is not None


def settle(task: DjangoTask, request: Context, *, succeeded: bool) -> None:
    """Release the lock of the call's last attempt, and after a success open its ignore window.

    A lock store error is logged, not raised: it must neither hide the task's own exception nor
    turn a success into a failure and lose its result. The lock then expires after its stale
    time limit, and no ignore window opens.
    """
    try:
        unique_key: str | None = read_header(request, UNIQUE_KEY_HEADER)
        if unique_key is None:
            # A message that django-celery-extensions published (during a rolling upgrade)
            # carries no key; its lock has the same key and holds this task id, and a release
            # is owner-checked: it frees nothing another call holds.
            unique_key = task._get_unique_key(request.args, request.kwargs)  # noqa: SLF001 - the task's key seam
        ignore_key = ignore_ttl = None
        if succeeded and _opens_ignore_window(task, request):
            ignore_key = ignore_key_of(task, request)
            ignore_ttl = positive_seconds(
                task.ignore_task_timedelta, f"ignore_task_timedelta of task {task.name!r}"
            )
        if unique_key is not None or ignore_key is not None:
            get_lock_store().release(
                task_id=str(request.id),
                unique_key=unique_key,
                ignore_key=ignore_key,
                ignore_ttl=ignore_ttl,
                task_name=task.name,
                arguments=(request.args, request.kwargs),
            )
    except Exception:
        logger.exception(
            "could not settle the unique lock and ignore window of task %s[%s]; "
            "the lock expires on its own",
            task.name,
            request.id,
        )
