"""DjangoTask: a Celery task base class for Django projects, with every call on the event bus.

A call goes one way: ``apply_async`` (or ``apply``, or an ``*_on_commit`` variant) sends
``invocation_apply``; when it triggers (at once, or after the transaction commits) the lock store
decides between ``invocation_ignored``, ``invocation_unique`` and ``invocation_trigger``, and a
triggered call is published with its invocation id, unique key and ignore key in the message
headers; a call that cannot be triggered or published sends ``invocation_failure``. On the worker
each attempt passes the gate of :mod:`celery_events.worker`, sends ``task_start`` and then one of
``task_retry``, ``task_failure`` or ``task_success``; the final success or failure releases the
unique lock, and a success opens the ignore window.

Each event calls the task's hook method (``on_invocation_apply`` ... ``on_task_success``) and
then sends the signal of the same name, whatever a subclass does in its hook. How a call's
options resolve is in :mod:`celery_events.options`; what happens where it runs, in
:mod:`celery_events.worker`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias

from celery import Task
from celery.app.routes import MapRoute
from celery.exceptions import CeleryError, Reject, Retry, TimeoutError  # noqa: A004 - what Celery raises
from django.db import transaction
from django.utils import timezone
from kombu import serialization
from kombu.utils.uuid import uuid as new_task_id

from . import options as call_options
from . import signals, worker
from .celery import CeleryQueueEnum
from .cleanup import release_lock
from .commands import get_django_command_task
from .config import settings
from .durations import positive_seconds, retry_delays
from .headers import (
    CARRIED_HEADERS,
    IGNORE_KEY_HEADER,
    STAND_IN_HEADER,
    TRIGGER_TIME_HEADER,
    UNIQUE_KEY_HEADER,
    read_header,
)
from .locks import LockStoreUnavailableError, Outcome, get_lock_store
from .results import FailedTriggerResult, IgnoredResult, NotTriggeredCeleryError, ResultWrapper

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    from billiard.einfo import ExceptionInfo
    from celery.app.task import Context
    from celery.result import AsyncResult, EagerResult

__all__ = [
    "DjangoTask",
    "FailedTriggerResult",
    "IgnoredResult",
    "NotTriggeredCeleryError",
    "ResultWrapper",
    "UniqueKeyGenerator",
    "default_unique_key_generator",
    "get_django_command_task",
]

logger: Final = logging.getLogger("celery_events")

# The task id this thread is handing to Celery's own apply_async or apply for a call already
# admitted: Celery re-enters apply() with it when task_always_eager is set.
_handing_over: ContextVar[str | None] = ContextVar("celery_events_handing_over", default=None)


UniqueKeyGenerator: TypeAlias = Callable[
    [Any, str, "Sequence[Any] | None", "Mapping[str, Any] | None"], str
]
"""A function ``(task, prefix, task_args, task_kwargs) -> key`` mapping a call to a cache key.

Set it as a task attribute (``unique_key_generator=...``): it is then called as a bound method,
``task.unique_key_generator(prefix, task_args, task_kwargs)``.
"""


def default_unique_key_generator(
    task: Task[Any, Any],
    prefix: str,
    task_args: Sequence[Any] | None,
    task_kwargs: Mapping[str, Any] | None,
) -> str:
    """Return a key for ``prefix``, the task's name and its serialized arguments.

    The key is the one django-celery-extensions computes, so old and new processes agree on
    lock keys during a rolling upgrade; the keyword arguments are sorted by name first, so their
    order never changes the key.

    Args:
        task: the task that is called.
        prefix: the key prefix (the unique or the ignore prefix of the settings).
        task_args: the call's positional arguments.
        task_kwargs: the call's keyword arguments.
    """
    kwargs = dict(sorted(task_kwargs.items())) if task_kwargs else {}
    # The app's serializer, as django-celery-extensions used it (not a task's own); a DjangoTask
    # has it bound when Celery binds the task, which spares a settings lookup per call.
    serializer = getattr(task, "_key_serializer", None) or task.app.conf.task_serializer
    _, _, data = serialization.dumps((list(task_args or ()), kwargs), serializer)
    if isinstance(data, bytes):  # a binary serializer such as pickle
        data = data.hex()
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{prefix}:{task.name}:{data}"))


class DjangoTask(Task):  # type: ignore[type-arg]
    """A Celery task for Django projects: commit-aware, unique, ignorable, observable.

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
        task_name = cls.__dict__.get("name", cls.__qualname__)
        for option in ("stale_time_limit", "max_queue_waiting_time", "ignore_task_timedelta"):
            value = getattr(cls, option)
            if value is not None:
                positive_seconds(value, f"{option} of task {task_name!r}")
        if cls.default_retry_delays is not None:
            cls.default_retry_delays = retry_delays(
                cls.default_retry_delays, f"default_retry_delays of task {task_name!r}"
            )
        if cls.ignore_task_after_success and cls.ignore_task_timedelta is None:
            msg = f"task {task_name!r} sets ignore_task_after_success but no ignore_task_timedelta"
            raise CeleryError(msg)

    # Invocation hooks: run in the caller's process. Override them freely; the signal of the
    # same name is sent after each, whether or not the override calls super().

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

    # Calling the task.

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run one attempt for the worker (or for apply); sends ``task_start`` first.

        The attempt first passes the gate of :mod:`celery_events.worker`: a unique task's lock
        must hold this message's task id, and a stand-in ends with its holder's outcome without
        running the body. The attempt that ends the task releases its unique lock (and, after
        a success, opens its ignore window) before Celery stores the result: whoever sees the
        result can call the task again at once.

        Raises:
            CeleryError: the task was called directly, as a function.
            LockStoreUnavailableError: the gate could not reach the lock store; the attempt
                fails without running the body (``task_start``, then ``task_failure``).
        """
        request = self.request_stack.top
        if request is None or request.called_directly:
            raise CeleryError(self._DIRECT_CALL_MESSAGE.format(name=self.name))
        try:
            stand_in = worker.admit_attempt(self, request)
        except LockStoreUnavailableError:
            # Never run the body unchecked: the attempt starts, and fails at its gate.
            self._start_attempt(request, args, kwargs)
            raise
        if stand_in is not None:
            return stand_in.complete()
        self._start_attempt(request, args, kwargs)
        try:
            retval = self.run(*args, **kwargs)
        except Retry:
            raise
        except Reject as reject:
            if not getattr(reject, "requeue", False):  # celery-types lacks "requeue"
                worker.settle(self, request, succeeded=False)
            raise
        except BaseException:
            worker.settle(self, request, succeeded=False)
            raise
        worker.settle(self, request, succeeded=True)
        return retval

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
        Returns a :class:`ResultWrapper`. A call that re-publishes the running attempt's own
        task id (a retry, from inside the attempt) continues its call and passes straight to
        Celery.

        Raises:
            CeleryError: a unique task has no stale time limit from the call, the task or the
                settings; or ``invocation_id`` is not a non-empty string.
        """
        if task_id is not None and self._continues_attempt(task_id):
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        return self._apply(args, kwargs, task_id, options, is_async=True)

    def apply(  # type: ignore[override]  # returns a ResultWrapper, as apply_async does
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> ResultWrapper | EagerResult[Any]:
        """Run the task here and now, through the same events and locks as apply_async.

        Returns a :class:`ResultWrapper` around Celery's ``EagerResult``.
        """
        task_id = options.pop("task_id", None)
        if task_id is not None and self._continues_attempt(task_id):
            return super().apply(args, kwargs, task_id=task_id, **options)
        return self._apply(args, kwargs, task_id, options, is_async=False)

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
        return self._apply(
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
        result = self._apply(args, kwargs, options.pop("task_id", None), options, is_async=True)
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
        return self._generate_key(settings.UNIQUE_TASK_KEY_PREFIX, task_args, task_kwargs)

    def _get_ignore_key(self, task_args: Any, task_kwargs: Any) -> str:
        """Return the ignore window's key of a call with these arguments.

        Raises:
            TypeError: ``unique_key_generator`` returned something other than a non-empty
                string.
        """
        return self._generate_key(settings.IGNORE_TASK_KEY_PREFIX, task_args, task_kwargs)

    def _generate_key(self, prefix: str, task_args: Any, task_kwargs: Any) -> str:
        key = self.unique_key_generator(prefix, task_args, task_kwargs)
        if not isinstance(key, str) or not key:
            generator = getattr(
                self.unique_key_generator, "__qualname__", self.unique_key_generator
            )
            msg = (
                f"unique_key_generator {generator} of task {self.name!r} returned {key!r}; "
                "it must return a non-empty string, the call's key"
            )
            raise TypeError(msg)
        return key

    def set_ignore_task(self, ignore_task_timedelta: timedelta | float | None = None) -> None:
        """From the task's body: ignore calls with the running attempt's arguments for a while.

        Args:
            ignore_task_timedelta: how long; the task's ``ignore_task_timedelta`` by default.

        Raises:
            CeleryError: outside a running task, or with no timedelta from the call or task.
        """
        request = self.request
        if request.called_directly:
            msg = f"set_ignore_task() of task {self.name!r} works only while the task runs"
            raise CeleryError(msg)
        timedelta_ = (
            self.ignore_task_timedelta if ignore_task_timedelta is None else (ignore_task_timedelta)
        )
        if timedelta_ is None:
            msg = (
                f"set_ignore_task() of task {self.name!r} needs an ignore_task_timedelta, "
                "on the task or in the call"
            )
            raise CeleryError(msg)
        get_lock_store().ignore(
            task_id=str(request.id),
            ignore_key=worker.ignore_key_of(self, request),
            ignore_ttl=positive_seconds(
                timedelta_, f"ignore_task_timedelta of set_ignore_task() of {self.name!r}"
            ),
            unique_key=read_header(request, UNIQUE_KEY_HEADER),
            task_name=self.name,
            arguments=(request.args, request.kwargs),
        )

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
        delays = (
            self.default_retry_delays
            if default_retry_delays is None
            else retry_delays(default_retry_delays, f"default_retry_delays of {self.name!r}")
        )
        if delays is not None and eta is None and countdown is None:
            if max_retries is None:
                max_retries = len(delays)
            if request.retries < len(delays):
                countdown = delays[request.retries]
        if not request.called_directly:
            # Every header of the message goes on (trace context, the user's own), then ours;
            # not a stand-in's mark: a stand-in that runs the body retries as the call itself.
            headers = {**(request.headers or {}), **(options.get("headers") or {})}
            headers.pop(STAND_IN_HEADER, None)
            headers[TRIGGER_TIME_HEADER] = time.time()
            for name in CARRIED_HEADERS:
                value = read_header(request, name)
                if value is not None:
                    headers[name] = value
            options["headers"] = headers
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def on_retry(
        self,
        exc: Exception,
        task_id: str,
        args: Any,
        kwargs: Any,
        einfo: ExceptionInfo,
    ) -> None:
        """Send ``task_retry``, with the time the next attempt is due."""
        super().on_retry(exc, task_id, args, kwargs, einfo)
        eta = worker.retry_eta(einfo)
        self._task_event(
            signals.task_retry, self.on_task_retry, self.request, task_id, args, kwargs, exc, eta
        )

    def on_failure(
        self,
        exc: Exception,
        task_id: str,
        args: Any,
        kwargs: Any,
        einfo: ExceptionInfo,
    ) -> None:
        """Send ``task_failure``; not for a stand-in, whose body did not run."""
        super().on_failure(exc, task_id, args, kwargs, einfo)
        request = self.request
        if not worker.is_stand_in_attempt(request):
            self._task_event(
                signals.task_failure,
                self.on_task_failure,
                request,
                task_id,
                args,
                kwargs,
                exc,
                einfo,
            )

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Send ``task_success``; not for a stand-in, whose body did not run."""
        super().on_success(retval, task_id, args, kwargs)
        request = self.request
        if not worker.is_stand_in_attempt(request):
            self._task_event(
                signals.task_success, self.on_task_success, request, task_id, args, kwargs, retval
            )

    def _start_attempt(self, request: Context, args: Any, kwargs: Any) -> None:
        self._task_event(signals.task_start, self.on_task_start, request, request.id, args, kwargs)

    def _task_event(
        self, signal: signals.EventSignal, hook: Callable[..., None], request: Context, *values: Any
    ) -> None:
        """Call the task hook with ``values``, then send its signal with the invocation id too."""
        hook(*values)
        if signal.receivers:
            signal.emit(self, worker.invocation_id_of(request), *values)

    def _invocation_event(
        self, signal: signals.EventSignal, hook: Callable[..., None], *values: Any
    ) -> None:
        """Call the invocation hook with ``values``, then send its signal with them."""
        hook(*values)
        if signal.receivers:
            signal.emit(self, *values)

    # The way of one call.

    def _continues_attempt(self, task_id: str) -> bool:
        """Tell a call that continues one already admitted from a new call with a given id.

        Two cases, neither of which a caller's options can fake: Celery re-entering ``apply``
        for a call this thread is handing over (``task_always_eager``), and a re-publish of the
        running attempt's own task id from inside that attempt (a retry, a stand-in's check).
        """
        if _handing_over.get() == task_id:
            return True
        request = self.request_stack.top
        return request is not None and not request.called_directly and request.id == task_id

    def _apply(
        self,
        args: Any,
        kwargs: Any,
        task_id: str | None,
        options: dict[str, Any],
        *,
        is_async: bool,
        is_on_commit: bool = False,
        using: str | None = None,
    ) -> ResultWrapper:
        bound = call_options.is_bound(task_id, options)
        if options and "using" in options and not is_on_commit:
            # django-celery-extensions took it from any call: it is not the broker's.
            using = options.pop("using")
        named_invocation = call_options.invocation_id_of(options)
        # A task id the caller gave is in the hooks' options from the start, as it was in
        # django-celery-extensions' (they gain the rest when the call triggers).
        caller_options = options if task_id is None else {"task_id": task_id, **options}
        # The call's own task id is made now, so that an on-commit call has it before it
        # triggers; unless the caller names the invocation, it is the invocation id too.
        task_id = task_id or new_task_id()
        invocation_id = named_invocation or task_id
        queue = (
            options.get("queue") or getattr(self, "queue", None) or self._routed_queue(args, kwargs)
        )
        hook_options = {
            **caller_options,
            "queue": str(queue),
            "is_async": is_async,
            "invocation_id": invocation_id,
            "apply_time": timezone.now(),
            "is_on_commit": is_on_commit,
            "using": using,
        }
        # Checked here, so that a mistake is reported where it is made and not later inside a
        # commit callback.
        call_options.check_call(self, kwargs, options)
        result = self.result_wrapper_class(invocation_id, self, args, kwargs, hook_options)
        self._invocation_event(
            signals.invocation_apply,
            self.on_invocation_apply,
            invocation_id,
            args,
            kwargs,
            hook_options,
            result,
        )
        if is_on_commit:
            transaction.on_commit(
                partial(self._trigger_at_commit, result, task_id, options, bound=bound),
                using=using,
            )
        else:
            self._trigger(result, task_id, options, bound=bound)
        return result

    def _trigger_at_commit(
        self, result: ResultWrapper, task_id: str, options: dict[str, Any], *, bound: bool
    ) -> None:
        """Trigger an on-commit call; an error stays on its result, never raised from the commit.

        The transaction has committed: raising would tell its caller otherwise, and would make
        Django skip the transaction's later ``on_commit`` callbacks.
        """
        try:
            self._trigger(result, task_id, options, bound=bound)
        except Exception as exc:
            result.set_result(FailedTriggerResult(exc))
            logger.exception(
                "on-commit call %s of task %s could not be triggered; the error is on its "
                "result, and the transaction's later on-commit callbacks still run",
                result.invocation_id,
                self.name,
            )

    def _trigger(
        self, result: ResultWrapper, task_id: str, options: dict[str, Any], *, bound: bool
    ) -> None:
        """Admit the call, then publish it (or, for a ``bound`` call, a stand-in) or join it.

        Raises:
            Exception: the lock store, the encoding or the publish failed; the call's
                ``invocation_failure`` was sent.
        """
        try:
            ignore_key = (
                self._get_ignore_key(result.args, result.kwargs)
                if call_options.checks_ignore_window(self, options.get("ignore_task_after_success"))
                else None
            )
            hook_options = call_options.trigger_options(
                self,
                result,
                task_id,
                options,
                unique_key=self._get_unique_key(result.args, result.kwargs),
                ignore_key=ignore_key,
            )
            result.set_options(hook_options)
            is_async = hook_options["is_async"]
            outcome, holder = self._admit(task_id, hook_options, result)
            if outcome is Outcome.TRIGGER:
                self._trigger_admitted(result, task_id, options, is_async=is_async)
            elif bound:
                self._publish_stand_in(result, task_id, options, holder, is_async=is_async)
            else:
                self._join_or_ignore(result, holder)
        except Exception as exc:
            self._send_invocation_failure(result, task_id, exc)
            raise

    def _trigger_admitted(
        self, result: ResultWrapper, task_id: str, options: dict[str, Any], *, is_async: bool
    ) -> None:
        """Send ``invocation_trigger`` and publish; release the lock if nothing was published."""
        try:
            self._send_invocation_outcome(
                signals.invocation_trigger, self.on_invocation_trigger, result
            )
            result.set_result(self._publish(result, task_id, options, is_async=is_async))
        except BaseException:
            # A lock left behind would refuse every call until it goes stale.
            release_lock(task_id, options["headers"].get(UNIQUE_KEY_HEADER), self.name)
            raise

    def _admit(
        self, task_id: str, hook_options: Mapping[str, Any], result: ResultWrapper
    ) -> tuple[Outcome, str | None]:
        """Ask the lock store whether the call triggers; return the outcome and the holder.

        A call whose lock holds its own task id (Celery re-publishing it from the worker's main
        process, as ``retry_on_worker_lost`` does) triggers.
        """
        headers = hook_options["headers"]
        unique_key = headers.get(UNIQUE_KEY_HEADER)
        ignore_key = headers.get(IGNORE_KEY_HEADER)
        if unique_key is None and ignore_key is None:
            return Outcome.TRIGGER, task_id
        admission = get_lock_store().admit(
            task_id=task_id,
            unique_key=unique_key,
            lock_ttl=call_options.lock_ttl(hook_options),
            ignore_key=ignore_key,
            task_name=self.name,
            arguments=(result.args, result.kwargs),
        )
        if admission.outcome is Outcome.UNIQUE and admission.task_id == task_id:
            return Outcome.TRIGGER, task_id
        return admission.outcome, admission.task_id

    def _join_or_ignore(self, result: ResultWrapper, holder: str | None) -> None:
        """Finish a call that does not trigger: it joins ``holder``'s call, or is ignored (None)."""
        result.set_options(dict(result.options, task_id=holder))
        result.set_result(IgnoredResult() if holder is None else self.AsyncResult(holder))
        self._send_join_or_ignore(result, holder)

    def _send_join_or_ignore(self, result: ResultWrapper, holder: str | None) -> None:
        if holder is None:
            self._send_invocation_outcome(
                signals.invocation_ignored, self.on_invocation_ignored, result
            )
        else:
            self._send_invocation_outcome(
                signals.invocation_unique, self.on_invocation_unique, result
            )

    def _publish_stand_in(
        self,
        result: ResultWrapper,
        task_id: str,
        options: dict[str, Any],
        holder: str | None,
        *,
        is_async: bool,
    ) -> None:
        """Publish a stand-in for a canvas member that joins ``holder`` or is ignored (None).

        The stand-in carries the member's task id, callbacks, chain and chord, so they get the
        holder's outcome, or None (see :mod:`celery_events.worker`). Sent to a broker, it is
        published before the outcome event, so that a failed publish is the call's only
        outcome; run here (eager, ``apply()``), it runs after it, as it would on a worker.
        """
        options["headers"][STAND_IN_HEADER] = (
            {"ignored": True} if holder is None else {"holder": holder, "checks": 0}
        )
        result.set_options(dict(result.options, task_id=holder))
        published = is_async and not self.app.conf.task_always_eager
        if not published:
            self._send_join_or_ignore(result, holder)
        stand_in = self._publish(result, task_id, options, is_async=is_async)
        result.set_result(stand_in if holder is not None else IgnoredResult(stand_in))
        if published:
            self._send_join_or_ignore(result, holder)

    def _publish(
        self, result: ResultWrapper, task_id: str, options: dict[str, Any], *, is_async: bool
    ) -> Any:
        """Publish an admitted call, or a stand-in, through :meth:`_apply_and_get_result`."""
        return self._apply_and_get_result(
            result,
            result.args,
            result.kwargs,
            result.invocation_id,
            is_async=is_async,
            task_id=task_id,
            **options,
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
        task_id = options["task_id"]
        if settings.AUTO_SQS_MESSAGE_GROUP_ID:
            options.setdefault("MessageGroupId", task_id)
        token = _handing_over.set(task_id)
        try:
            if is_async:  # runs here through apply() when task_always_eager is set
                return Task.apply_async(self, args, kwargs, **options)
            return Task.apply(self, args, kwargs, **options)
        finally:
            _handing_over.reset(token)

    def _send_invocation_outcome(
        self, signal: signals.EventSignal, hook: Callable[..., None], result: ResultWrapper
    ) -> None:
        options = result.options
        self._invocation_event(
            signal,
            hook,
            result.invocation_id,
            result.args,
            result.kwargs,
            options["task_id"],
            options,
            result,
        )

    def _send_invocation_failure(self, result: ResultWrapper, task_id: str, exc: Exception) -> None:
        self._invocation_event(
            signals.invocation_failure,
            self.on_invocation_failure,
            result.invocation_id,
            result.args,
            result.kwargs,
            task_id,
            exc,
            result.options,
            result,
        )

    def _routed_queue(self, args: Any, kwargs: Any) -> str:
        """Return the queue Celery's router sends this call to; kept while routes go by name."""
        router = self.app.amqp.router
        cached = self._routed_queue_cache
        if cached is not None and cached[0] is router:
            return cached[1]
        queue = str(router.route({}, self.name, args, kwargs, self)["queue"].name)  # type: ignore[arg-type]  # celery-types wants a class; Celery passes the task
        if all(isinstance(route, MapRoute) for route in router.routes):  # type: ignore[attr-defined]  # untyped in celery-types
            self._routed_queue_cache = (router, queue)
        return queue

    def _invocation_timed_out(self, result: ResultWrapper, ex: TimeoutError) -> None:
        self._invocation_event(
            signals.invocation_timeout,
            self.on_invocation_timeout,
            result.invocation_id,
            result.args,
            result.kwargs,
            # The task id the call knows: a subclass's _apply_and_get_result may return a
            # result of its own type, which need not have an id.
            result.options.get("task_id"),
            ex,
            result.options,
            result,
        )
