"""DjangoTask's worker request: a lost or timed-out task ends its call before its failure shows.

When a pool process is lost (killed, out of memory) or killed at its hard time limit, the task
cannot release its own unique lock, and Celery's main process stores the failure
(``WorkerLostError``, ``TimeLimitExceeded``). Released after that, as a ``task_failure`` receiver
would, the lock outlives the visible failure by a few milliseconds, and a caller that sees the
failure and calls again at once joins the dead task and gets its failure too. This request
ends the call first (:func:`celery_events.worker.settle_lost`: the lock freed, the failure left
as its outcome for whoever joined it, and they woken), so no caller can join a call whose
failure is already visible.

:class:`~celery_events.task.DjangoTask` names it in its ``Request`` attribute; only worker
processes import it. A project with a request class of its own for DjangoTasks derives it from
this one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, cast

from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]  # untyped in celery-types
from billiard.exceptions import Terminated, TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request as CeleryRequest

from . import worker
from .headers import UNIQUE_KEY_HEADER

if TYPE_CHECKING:
    from billiard.einfo import ExceptionInfo

    from .typing import CalledTask

__all__ = ["Request"]

logger: Final = logging.getLogger("celery_events")

#: What the pool reports for a task that ended without releasing its lock. Billiard 4.3 and
#: later report a lost process as SystemExit or KeyboardInterrupt before it is WorkerLostError.
_LOST: Final = (WorkerLostError, TimeLimitExceeded, Terminated, SystemExit, KeyboardInterrupt)


class Request(CeleryRequest):
    """Celery's worker request, releasing a lost or timed-out task's lock before the failure.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        """Release the lock of a task whose process was lost, then let Celery record it."""
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        # With return_ok, the failure is the task's own: it released its lock as it ended.
        if not return_ok and isinstance(exc, _LOST):
            self._end_call(exc)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def on_timeout(self, soft: bool, timeout: float) -> Any:
        """At the hard time limit, release the task's lock, then let Celery record it.

        Celery 5.6 and later run the task's ``on_failure`` here, in the worker's main process:
        the message's request is pushed for it, so that its ``task_failure`` event carries the
        call's invocation id.
        """
        if soft:
            return super().on_timeout(soft, timeout)
        self._end_call(TimeLimitExceeded(timeout))
        request_stack = self.task.request_stack
        request_stack.push(self._context)  # type: ignore[attr-defined]  # untyped in celery-types
        try:
            return super().on_timeout(soft, timeout)
        finally:
            request_stack.pop()

    def _end_call(self, exc: BaseException) -> None:
        """Free the lock, leave ``exc`` as the call's outcome and wake whoever joined it."""
        # Only DjangoTask names this request class.
        task = cast("CalledTask", self.task)
        # Celery must still record the failure when the lock store is down: log, do not raise.
        try:
            worker.settle_lost(task, self.id, self.request_dict.get(UNIQUE_KEY_HEADER), exc)
        except Exception:
            logger.exception(
                "could not release the unique lock of lost task %s[%s]; it expires on its own",
                self.name,
                self.id,
            )
