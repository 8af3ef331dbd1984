"""DjangoTask: a Celery task base class for Django projects, with every call on the event bus.

This module is DjangoTask's public face: the API of the usage guide (commit-aware apply, wait for
a result, retry delays, unique and ignore-after-success calls), the hooks a subclass overrides,
and Celery's methods it overrides. What a call does is elsewhere, in the order it runs: the
caller's way (options, admission, publish, stand-in or join, the invocation events) in
:mod:`celery_events.caller`, how a call's options resolve in :mod:`celery_events.options`, and
the worker's way (gate, body, retry, settle, the task events) in :mod:`celery_events.worker`.

Each event calls the task's hook method (``on_invocation_apply`` ... ``on_task_success``) and
then sends the signal of the same name, whatever a subclass does in its hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from celery import Task
from celery.exceptions import CeleryError, TimeoutError  # noqa: A004 - what Celery raises

from . import caller, retries, signals, windows, worker
from . import options as call_options
from .celery import CeleryQueueEnum
from .commands import get_django_command_task
from .config import settings
from .hooks import TaskHooks
from .keys import call_key, default_unique_key_generator
from .locks import get_lock_store
from .results import FailedTriggerResult, IgnoredResult, NotTriggeredCeleryError, ResultWrapper
from .typing import UniqueKeyGenerator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime, timedelta

    from billiard.einfo import ExceptionInfo
    from celery.canvas import Signature
    from celery.exceptions import Retry
    from celery.result import AsyncResult, EagerResult

__all__ = [
    "DjangoTask",
    "FailedTriggerResult",
    "IgnoredResult",
    "NotTriggeredCeleryError",
    "ResultWrapper",
    "TaskHooks",
    "UniqueKeyGenerator",
    "default_unique_key_generator",
    "get_django_command_task",
]


class DjangoTask(TaskHooks, Task):  # type: ignore[type-arg]
    """A Celery task for Django projects: commit-aware, unique, ignorable, observable.

    Its hooks, one per event of a call, are those of :class:`~celery_events.hooks.TaskHooks`.
    Task options (set them in ``@app.task(...)`` or on a subclass):

    - ``default_retry_delays``: seconds to wait before each retry, one per retry; the number of
      retries is the length of the tuple.
    - ``unique`` and ``stale_time_limit``: run one call of the same arguments at a time; the
      lock lives at most ``stale_time_limit`` seconds.
    - ``max_queue_waiting_time``: with a time limit, derives ``stale_time_limit``.
    - ``unique_key_generator``: how a call maps to its lock key.
    - ``ignore_task_after_success`` and ``ignore_task_timedelta``: ignore calls of the same
      arguments for a while after a success.
    """

    default_retry_delays: Sequence[float] | None = None
    unique: bool = False
    stale_time_limit: float | None = None
    max_queue_waiting_time: float | None = None
    unique_key_generator: ClassVar[UniqueKeyGenerator] = default_unique_key_generator
    ignore_task_after_success: bool = False
    ignore_task_timedelta: timedelta | float | None = None
    result_wrapper_class: type[ResultWrapper] = ResultWrapper

    #: The worker's request class: frees a lost task's lock before Celery stores its failure.
    Request = "celery_events.request:Request"

    # Celery binds these defaults from its config once, as it does serializer and acks_late,
    # so that a call does not look them up again.
    from_config = (
        *Task.from_config,
        ("time_limit", "task_time_limit"),
        ("soft_time_limit", "task_soft_time_limit"),
        ("_key_serializer", "task_serializer"),
    )
    _key_serializer: str | None = None
    _routed_queue_cache: tuple[Any, str] | None = None

    _DIRECT_CALL_MESSAGE: ClassVar[str] = (
        "task {name!r} cannot be called directly; use apply(), apply_async(), delay(), "
        "apply_async_on_commit() or delay_on_commit()"
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Apply a CeleryQueueEnum queue's default options and check the task's own options.

        Raises:
            CeleryError: ``ignore_task_after_success`` is set without ``ignore_task_timedelta``.
            TypeError: a limit or delay is neither seconds (a number) nor a timedelta.
            ValueError: a limit is 0 or less, or a retry delay less than 0.
        """
        super().__init_subclass__(**kwargs)
        queue = cls.__dict__.get("queue")
        if isinstance(queue, CeleryQueueEnum):
            setattr(cls, "queue", queue.queue_name)  # noqa: B010 - Celery's stubs lack "queue"
            for name, value in queue.default_task_kwargs.items():
                if getattr(cls, name, None) is None:
                    setattr(cls, name, value)
        call_options.check_task_class(cls, cls.__dict__.get("name", cls.__qualname__))

    # Calling the task.

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run one attempt where the task runs: :func:`celery_events.worker.run_attempt`.

        The attempt first passes the gate: a unique task's lock must hold this message's task
        id, and a stand-in ends with its holder's outcome without running the body. Then
        ``task_start`` is sent and the body runs; the attempt that ends the task releases its
        unique lock (and, after a success, opens its ignore window) before Celery stores the
        result: whoever sees the result can call the task again at once.

        Raises:
            CeleryError: the task was called directly, as a function.
            LockStoreUnavailableError: the gate could not reach the lock store; the attempt
                fails without running the body (``task_start``, then ``task_failure``).
        """
        request = self.request_stack.top
        if request is None or request.called_directly:
            raise CeleryError(self._DIRECT_CALL_MESSAGE.format(name=self.name))
        return worker.run_attempt(self, request, args, kwargs)

    def apply_async(  # type: ignore[override]  # returns a ResultWrapper, as it always has
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        **options: Any,
    ) -> ResultWrapper | AsyncResult[Any]:
        """Apply the task asynchronously: ignore check, unique lock, then publish.

        Takes Celery's ``apply_async`` options, plus ``stale_time_limit`` for a unique task and
        ``invocation_id`` (a caller's id for the call, as django-celery-extensions took it).
        Returns a :class:`~celery_events.results.ResultWrapper`. A call that re-publishes the
        running attempt's own task id (a retry, from inside the attempt) continues its call and
        passes straight to Celery.

        Raises:
            CeleryError: a unique task has no stale time limit from the call, the task or the
                settings; or ``invocation_id`` is not a non-empty string.
        """
        if task_id is not None and caller.continues_attempt(self, task_id):
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        return caller.apply(self, args, kwargs, task_id, options, is_async=True)

    def apply(  # type: ignore[override]  # returns a ResultWrapper, as apply_async does
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> ResultWrapper | EagerResult[Any]:
        """Run the task here and now, through the same events and locks as apply_async.

        Returns a :class:`~celery_events.results.ResultWrapper` around Celery's ``EagerResult``.
        """
        task_id = options.pop("task_id", None)
        if task_id is not None and caller.continues_attempt(self, task_id):
            return super().apply(args, kwargs, task_id=task_id, **options)
        return caller.apply(self, args, kwargs, task_id, options, is_async=False)

    def apply_async_on_commit(
        self, args: Any = None, kwargs: Any = None, using: str | None = None, **options: Any
    ) -> ResultWrapper:
        """Apply the task when the current transaction of database ``using`` commits.

        Until then the result's ``state`` is ``'WAITING'``; after a rollback nothing triggers.
        Outside a transaction the call triggers at once. A trigger that fails at commit time
        (the lock store unreachable, arguments that cannot be encoded, the broker down) never
        raises out of the commit, which has succeeded: the error is on the result (``state``
        ``'FAILURE'``, ``get()`` raises it), on the bus (``invocation_failure``) and in the
        ``celery_events`` log, and the transaction's later ``on_commit`` callbacks still run.
        """
        return caller.apply(
            self,
            args,
            kwargs,
            options.pop("task_id", None),
            options,
            is_async=True,
            using=using,
            is_on_commit=True,
        )

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> ResultWrapper:
        """Like ``delay``, when the current transaction commits."""
        return self.apply_async_on_commit(args, kwargs)

    def apply_async_and_get_result(
        self,
        args: Any = None,
        kwargs: Any = None,
        timeout: float | None = None,
        propagate: bool = True,
        **options: Any,
    ) -> Any:
        """Apply the task and wait up to ``timeout`` seconds for its result.

        Args:
            args: the task's positional arguments.
            kwargs: the task's keyword arguments.
            timeout: seconds to wait; None waits for ever, 0 gives up at once.
            propagate: re-raise the task's exception, as ``AsyncResult.get`` does.
            **options: ``apply_async`` options.

        Raises:
            celery.exceptions.TimeoutError: no result in time; ``invocation_timeout`` was sent.
        """
        result = caller.apply(
            self, args, kwargs, options.pop("task_id", None), options, is_async=True
        )
        if timeout is None or timeout > 0 or isinstance(result.async_result, IgnoredResult):
            return result.get(timeout=timeout, propagate=propagate)
        ex = TimeoutError("The operation timed out.")
        result.timeout(ex)
        raise ex

    def get_command_kwargs(self) -> dict[str, Any]:
        """Return the options of the management command a command task runs; none by default.

        The hook of django-celery-extensions for command tasks: the keyword arguments of a call
        are added over what it returns.
        """
        return {}

    # Unique and ignore.

    def is_processing(self, args: Any = None, kwargs: Any = None) -> bool:
        """Return True while a call of this unique task with these arguments holds its lock.

        Raises:
            CeleryError: the task is not unique.
        """
        if not self.unique:
            msg = f"is_processing() needs a unique task; task {self.name!r} is not unique"
            raise CeleryError(msg)
        unique_key = self._get_unique_key(args, kwargs)
        return unique_key is not None and get_lock_store().holder(unique_key) is not None

    def _get_unique_key(self, task_args: Any, task_kwargs: Any) -> str | None:
        """Return the unique lock's key of a call with these arguments; None when not unique.

        The seam that django-celery-extensions had, with its signature: every call and
        :meth:`is_processing` take the key from here (the worker reads it from the message, and
        asks here only for a message that carries none), so a test that patches it forces the
        lock key (and one that returns None makes the call not unique).

        Raises:
            TypeError: ``unique_key_generator`` returned something other than a non-empty
                string.
        """
        if not self.unique:
            return None
        prefix = settings.UNIQUE_TASK_KEY_PREFIX
        return call_key(self.unique_key_generator, self.name, prefix, task_args, task_kwargs)

    def _get_ignore_key(self, task_args: Any, task_kwargs: Any) -> str:
        """Return the ignore window's key of a call with these arguments.

        Raises:
            TypeError: ``unique_key_generator`` returned something other than a non-empty
                string.
        """
        prefix = settings.IGNORE_TASK_KEY_PREFIX
        return call_key(self.unique_key_generator, self.name, prefix, task_args, task_kwargs)

    def set_ignore_task(self, ignore_task_timedelta: timedelta | float | None = None) -> None:
        """From the task's body: ignore calls with the running attempt's arguments for a while.

        Args:
            ignore_task_timedelta: how long; the task's ``ignore_task_timedelta`` by default.

        Raises:
            CeleryError: outside a running task, or with no timedelta from the call or task.
        """
        windows.set_ignore_task(self, self.request, ignore_task_timedelta)

    # Celery's handlers, where the worker-side events are sent.

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Exception | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        default_retry_delays: Sequence[float | timedelta] | None = None,
        **options: Any,
    ) -> Retry:
        """Retry as Celery does; with ``default_retry_delays``, attempt n waits delays[n].

        The retry keeps the invocation id, the unique lock and the ignore key of the call.
        Takes Celery's arguments, and ``default_retry_delays``: delays for this retry instead
        of the task's, as django-celery-extensions took them.

        Raises:
            TypeError: a delay is neither seconds nor a timedelta.
            ValueError: a delay is less than 0.
        """
        request = self.request
        if eta is None and countdown is None:
            countdown, max_retries = retries.retry_delay(
                self, request, default_retry_delays, max_retries
            )
        if not request.called_directly:
            options = retries.retry_options(request, options)
            retries.step_out(self, request, eta, countdown)
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def on_replace(self, sig: Signature[Any]) -> None:
        """Replace the attempt as Celery does; a replacement by the same call keeps the lock.

        A signature of this task with arguments of the same unique key takes over the call:
        its lock stays held (``is_processing()`` stays True, calls made meanwhile join it) and
        is freed when the replacement ends. See :func:`celery_events.worker.hand_over`.
        """
        worker.hand_over(self, self.request, sig)
        return super().on_replace(sig)

    def on_retry(
        self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo
    ) -> None:
        """Send ``task_retry``, with the time the next attempt is due."""
        super().on_retry(exc, task_id, args, kwargs, einfo)
        event = (task_id, args, kwargs, exc, retries.retry_eta(einfo))
        worker.send_task_event(self, signals.task_retry, self.on_task_retry, self.request, event)

    def on_failure(
        self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: ExceptionInfo
    ) -> None:
        """Send ``task_failure``; not for a stand-in, whose body did not run."""
        super().on_failure(exc, task_id, args, kwargs, einfo)
        event = (task_id, args, kwargs, exc, einfo)
        worker.send_task_event(
            self, signals.task_failure, self.on_task_failure, self.request, event
        )

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Send ``task_success``; not for a stand-in, whose body did not run."""
        super().on_success(retval, task_id, args, kwargs)
        event = (task_id, args, kwargs, retval)
        worker.send_task_event(
            self, signals.task_success, self.on_task_success, self.request, event
        )

    def _apply_and_get_result(
        self,
        result: ResultWrapper,
        args: Any,
        kwargs: Any,
        invocation_id: str,
        is_async: bool = False,
        **options: Any,
    ) -> Any:
        """Publish a triggered call (or run it here, for ``apply`` or eager); return its result.

        Every message a call publishes goes through here, with its task id and its final
        options and headers: this is the seam that django-celery-extensions had, with its
        signature. A test that patches it to return a result of its own stops the publish (the
        lock of a unique call stays taken, as it would by a message nobody consumes); a subclass
        may override it to wrap the publish.

        Args:
            result: the call's :class:`ResultWrapper`, not yet holding Celery's result.
            args: the task's positional arguments.
            kwargs: the task's keyword arguments.
            invocation_id: the call's invocation id.
            is_async: publish to the broker (``apply_async``); False runs it here (``apply``).
            **options: Celery's ``apply_async`` or ``apply`` options, ``task_id`` among them.

        Returns:
            Celery's ``AsyncResult`` (or ``EagerResult``), which the call's result wraps.
        """
        return caller.hand_over(self, args, kwargs, is_async=is_async, **options)

    def _invocation_timed_out(self, result: ResultWrapper, ex: TimeoutError) -> None:
        """Send ``invocation_timeout``: :meth:`ResultWrapper.get` timed out with ``ex``."""
        caller.timed_out(self, result, ex)
