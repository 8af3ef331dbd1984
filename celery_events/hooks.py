"""The hooks of a DjangoTask, one per event of its calls, for a subclass to override.

:class:`~celery_events.task.DjangoTask` derives from :class:`TaskHooks`; the way of a call
(:mod:`celery_events.caller`, :mod:`celery_events.worker`) calls each hook, then sends the
signal of the same name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from billiard.einfo import ExceptionInfo
    from celery.exceptions import TimeoutError  # noqa: A004 - what Celery raises

    from .results import ResultWrapper

__all__ = ["TaskHooks"]


class TaskHooks:
    """The hooks of a DjangoTask, one per event of its calls: override them freely.

    Each is called with the event's arguments, and then the signal of the same name
    (:mod:`celery_events.signals`) is sent, whether or not an override calls ``super()``: an
    override never silences the bus. The invocation hooks run in the caller's process, the task
    hooks where the task runs (a worker, or the caller for ``apply()`` and eager calls). The
    defaults of the invocation hooks tell the call's result (``result.on_apply()``...), as
    django-celery-extensions' did, so that a ``result_wrapper_class`` of its own can react.

    .. versionadded:: 0.2.0
    """

    # Invocation hooks: run in the caller's process.

    def on_invocation_apply(
        self,
        invocation_id: str,
        args: Any,
        kwargs: Any,
        options: Mapping[str, Any],
        result: ResultWrapper,
    ) -> None:
        """The task was applied by a caller; nothing has been published yet."""
        result.on_apply()

    def on_invocation_trigger(
        self,
        invocation_id: str,
        args: Any,
        kwargs: Any,
        task_id: str,
        options: Mapping[str, Any],
        result: ResultWrapper,
    ) -> None:
        """The call triggered: its message is published right after this hook."""
        result.on_trigger()

    def on_invocation_unique(
        self,
        invocation_id: str,
        args: Any,
        kwargs: Any,
        task_id: str,
        options: Mapping[str, Any],
        result: ResultWrapper,
    ) -> None:
        """The same call is in progress (task ``task_id``); this call joined it."""
        result.on_unique()

    def on_invocation_ignored(
        self,
        invocation_id: str,
        args: Any,
        kwargs: Any,
        task_id: str | None,
        options: Mapping[str, Any],
        result: ResultWrapper,
    ) -> None:
        """The same call succeeded within ignore_task_timedelta; nothing is published."""
        result.on_ignored()

    def on_invocation_failure(
        self,
        invocation_id: str,
        args: Any,
        kwargs: Any,
        task_id: str,
        exc: Exception,
        options: Mapping[str, Any],
        result: ResultWrapper,
    ) -> None:
        """The call could not be triggered or published (``task_id`` was to be its id).

        .. versionadded:: 0.1.0
        """

    def on_invocation_timeout(
        self,
        invocation_id: str,
        args: Any,
        kwargs: Any,
        task_id: str | None,
        ex: TimeoutError,
        options: Mapping[str, Any],
        result: ResultWrapper,
    ) -> None:
        """The caller's wait for the result timed out with ``ex``."""
        result.on_timeout()

    # Task hooks: run where the task runs (the worker, or the caller when eager).

    def on_task_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        """An attempt of the task starts."""

    def on_task_retry(
        self, task_id: str, args: Any, kwargs: Any, exc: BaseException | None, eta: datetime
    ) -> None:
        """The attempt failed with ``exc``; the next attempt is due at ``eta``."""

    def on_task_failure(
        self, task_id: str, args: Any, kwargs: Any, exc: BaseException, einfo: ExceptionInfo
    ) -> None:
        """The attempt failed with ``exc`` and will not be retried."""

    def on_task_success(self, task_id: str, args: Any, kwargs: Any, retval: Any) -> None:
        """The attempt returned ``retval``."""
