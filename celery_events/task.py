"""DjangoTask: a Celery task base class for Django projects, with every call on the event bus.

A call goes one way: ``apply_async`` (or ``apply``, or an ``*_on_commit`` variant) sends
``invocation_apply``; when it triggers (at once, or after the transaction commits) the lock store
decides between ``invocation_ignored``, ``invocation_unique`` and ``invocation_trigger``, and a
triggered call is published with its invocation id, unique key and ignore key in the message
headers. On the worker each attempt sends ``task_start`` and then one of ``task_retry``,
``task_failure`` or ``task_success``; the final success or failure releases the unique lock, and
a success opens the ignore window.

Each event calls the task's hook method (``on_invocation_apply`` ... ``on_task_success``) and
then sends the signal of the same name, whatever a subclass does in its hook.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias, cast

from celery import Task
from celery.app.routes import MapRoute
from celery.exceptions import CeleryError, Reject, Retry, TimeoutError  # noqa: A004 - what Celery raises
from django.db import transaction
from django.utils import timezone
from kombu import serialization
from kombu.utils.uuid import uuid as new_task_id

from . import signals
from .celery import CeleryQueueEnum
from .commands import get_django_command_task
from .config import settings
from .headers import (
    CARRIED_HEADERS,
    IGNORE_KEY_HEADER,
    INVOCATION_ID_HEADER,
    UNIQUE_KEY_HEADER,
    read_header,
)
from .locks import Outcome, get_lock_store
from .results import IgnoredResult, NotTriggeredCeleryError, ResultWrapper

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from billiard.einfo import ExceptionInfo
    from celery.app.task import Context
    from celery.result import AsyncResult, EagerResult

__all__ = [
    "DjangoTask",
    "IgnoredResult",
    "NotTriggeredCeleryError",
    "ResultWrapper",
    "UniqueKeyGenerator",
    "default_unique_key_generator",
    "get_django_command_task",
]

logger: Final = logging.getLogger("celery_events")


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
    _, _, data = serialization.dumps((list(task_args or ()), kwargs), task.app.conf.task_serializer)
    if isinstance(data, bytes):  # a binary serializer such as pickle
        data = data.hex()
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{prefix}:{task.name}:{data}"))


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _continues_invocation(options: Mapping[str, Any]) -> bool:
    """Tell a triggered call re-entering apply (a retry, an eager run) from a new call."""
    headers = options.get("headers")
    return headers is not None and INVOCATION_ID_HEADER in headers


def _retry_eta(einfo: ExceptionInfo) -> datetime:
    """Return when the retry described by ``einfo`` (a Retry, wrapped by billiard) is due."""
    retry = getattr(einfo.exception, "exc", einfo.exception)
    when = getattr(retry, "when", None)
    if isinstance(when, datetime):
        return when
    return timezone.now() + timedelta(seconds=float(when or 0))


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

    # Celery binds these defaults from its config once, as it does serializer and acks_late,
    # so that a call does not look them up again.
    from_config = (
        *Task.from_config,
        ("time_limit", "task_time_limit"),
        ("soft_time_limit", "task_soft_time_limit"),
    )
    _routed_queue_cache: tuple[Any, str] | None = None

    _DIRECT_CALL_MESSAGE: ClassVar[str] = (
        "task {name!r} cannot be called directly; use apply(), apply_async(), delay(), "
        "apply_async_on_commit() or delay_on_commit()"
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Apply a CeleryQueueEnum queue's default options and check the ignore options.

        Raises:
            CeleryError: ``ignore_task_after_success`` is set without ``ignore_task_timedelta``.
        """
        super().__init_subclass__(**kwargs)
        queue = cls.__dict__.get("queue")
        if isinstance(queue, CeleryQueueEnum):
            setattr(cls, "queue", queue.queue_name)  # noqa: B010 - Celery's stubs lack "queue"
            for name, value in queue.default_task_kwargs.items():
                if getattr(cls, name, None) is None:
                    setattr(cls, name, value)
        if cls.ignore_task_after_success and cls.ignore_task_timedelta is None:
            msg = (
                f"task {cls.__dict__.get('name', cls.__qualname__)!r} sets "
                "ignore_task_after_success but no ignore_task_timedelta"
            )
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

        The attempt that ends the task releases its unique lock (and, after a success, opens
        its ignore window) here, before Celery stores the result: whoever sees the result can
        call the task again at once.

        Raises:
            CeleryError: the task was called directly, as a function.
        """
        request = self.request_stack.top
        if request is None or request.called_directly:
            raise CeleryError(self._DIRECT_CALL_MESSAGE.format(name=self.name))
        invocation_id = self._invocation_id(request)
        task_id = cast("str", request.id)
        self.on_task_start(task_id, args, kwargs)
        if signals.task_start.receivers:
            signals.task_start.send(
                self, invocation_id=invocation_id, task_id=task_id, args=args, kwargs=kwargs
            )
        try:
            retval = self.run(*args, **kwargs)
        except Retry:
            raise
        except Reject as reject:
            if not getattr(reject, "requeue", False):  # celery-types lacks "requeue"
                self._settle(request, succeeded=False)
            raise
        except BaseException:
            self._settle(request, succeeded=False)
            raise
        self._settle(request, succeeded=True)
        return retval

    def apply_async(  # type: ignore[override]  # returns a ResultWrapper, as it always has
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        **options: Any,
    ) -> ResultWrapper | AsyncResult[Any]:
        """Apply the task asynchronously: ignore check, unique lock, then publish.

        Takes Celery's ``apply_async`` options, plus ``stale_time_limit`` for a unique task.
        Returns a :class:`ResultWrapper`.

        Raises:
            CeleryError: a unique task has no stale time limit from the call, the task or the
                settings.
        """
        if _continues_invocation(options):
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        return self._apply(args, kwargs, task_id, options, is_async=True)

    def apply(  # type: ignore[override]  # returns a ResultWrapper, as apply_async does
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> ResultWrapper | EagerResult[Any]:
        """Run the task here and now, through the same events and locks as apply_async.

        Returns a :class:`ResultWrapper` around Celery's ``EagerResult``.
        """
        if _continues_invocation(options):
            return super().apply(args, kwargs, **options)
        return self._apply(args, kwargs, options.pop("task_id", None), options, is_async=False)

    def apply_async_on_commit(
        self, args: Any = None, kwargs: Any = None, using: str | None = None, **options: Any
    ) -> ResultWrapper:
        """Apply the task when the current transaction of database ``using`` commits.

        Until then the result's ``state`` is ``'WAITING'``; after a rollback nothing triggers.
        Outside a transaction the call triggers at once.
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

    # Unique and ignore.

    def is_processing(self, args: Any = None, kwargs: Any = None) -> bool:
        """Return True while a call of this unique task with these arguments holds its lock.

        Raises:
            CeleryError: the task is not unique.
        """
        if not self.unique:
            msg = f"is_processing() needs a unique task; task {self.name!r} is not unique"
            raise CeleryError(msg)
        unique_key = self.unique_key_generator(settings.UNIQUE_TASK_KEY_PREFIX, args, kwargs)
        return get_lock_store().holder(unique_key) is not None

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
            ignore_key=self._ignore_key(request),
            ignore_ttl=_seconds(timedelta_),
            unique_key=read_header(request, UNIQUE_KEY_HEADER),
            task_name=self.name,
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
        **options: Any,
    ) -> Retry:
        """Retry as Celery does; with ``default_retry_delays``, attempt n waits delays[n].

        The retry keeps the invocation id, the unique lock and the ignore key of the call.
        """
        request = self.request
        delays = self.default_retry_delays
        if delays is not None and eta is None and countdown is None:
            if max_retries is None:
                max_retries = len(delays)
            if request.retries < len(delays):
                countdown = delays[request.retries]
        if not request.called_directly:
            carried = {name: read_header(request, name) for name in CARRIED_HEADERS}
            carried[INVOCATION_ID_HEADER] = self._invocation_id(request)
            # Every header of the message goes on (trace context, the user's own), then ours.
            options["headers"] = {
                **(request.headers or {}),
                **(options.get("headers") or {}),
                **carried,
            }
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
        eta = _retry_eta(einfo)
        self.on_task_retry(task_id, args, kwargs, exc, eta)
        if signals.task_retry.receivers:
            signals.task_retry.send(
                self,
                invocation_id=self._invocation_id(self.request),
                task_id=task_id,
                args=args,
                kwargs=kwargs,
                exc=exc,
                eta=eta,
            )

    def on_failure(
        self,
        exc: Exception,
        task_id: str,
        args: Any,
        kwargs: Any,
        einfo: ExceptionInfo,
    ) -> None:
        """Send ``task_failure``."""
        super().on_failure(exc, task_id, args, kwargs, einfo)
        request = self.request
        self.on_task_failure(task_id, args, kwargs, exc, einfo)
        if signals.task_failure.receivers:
            signals.task_failure.send(
                self,
                invocation_id=self._invocation_id(request),
                task_id=task_id,
                args=args,
                kwargs=kwargs,
                exc=exc,
                einfo=einfo,
            )

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Send ``task_success``."""
        super().on_success(retval, task_id, args, kwargs)
        request = self.request
        self.on_task_success(task_id, args, kwargs, retval)
        if signals.task_success.receivers:
            signals.task_success.send(
                self,
                invocation_id=self._invocation_id(request),
                task_id=task_id,
                args=args,
                kwargs=kwargs,
                retval=retval,
            )

    # The way of one call.

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
        invocation_id = new_task_id()
        queue = (
            options.get("queue") or getattr(self, "queue", None) or self._routed_queue(args, kwargs)
        )
        hook_options = {
            **options,
            "queue": str(queue),
            "is_async": is_async,
            "invocation_id": invocation_id,
            "apply_time": timezone.now(),
            "is_on_commit": is_on_commit,
            "using": using,
        }
        if self.unique:
            # Resolved here, so that a missing limit is reported where the mistake is made and
            # not later inside a commit callback.
            options["stale_time_limit"] = self._stale_time_limit(
                options.get("stale_time_limit"), options.get("time_limit")
            )
        result = self.result_wrapper_class(invocation_id, self, args, kwargs, hook_options)
        self.on_invocation_apply(invocation_id, args, kwargs, hook_options, result)
        if signals.invocation_apply.receivers:
            signals.invocation_apply.send(
                self,
                invocation_id=invocation_id,
                args=args,
                kwargs=kwargs,
                options=hook_options,
                result=result,
            )
        trigger = partial(self._trigger, result, task_id, options)
        if is_on_commit:
            transaction.on_commit(trigger, using=using)
        else:
            trigger()
        return result

    def _trigger(self, result: ResultWrapper, task_id: str | None, options: dict[str, Any]) -> None:
        hook_options = self._trigger_options(result, task_id or new_task_id(), options)
        result.set_options(hook_options)
        task_id = hook_options["task_id"]
        headers = hook_options["headers"]
        unique_key = headers.get(UNIQUE_KEY_HEADER)
        ignore_key = headers.get(IGNORE_KEY_HEADER)
        store = None
        if unique_key is not None or ignore_key is not None:
            store = get_lock_store()
            admission = store.admit(
                task_id=task_id,
                unique_key=unique_key,
                lock_ttl=self._lock_ttl(hook_options),
                ignore_key=ignore_key,
                task_name=self.name,
            )
            if admission.outcome is not Outcome.TRIGGER:
                self._join_or_ignore(result, admission.task_id)
                return
        try:
            self._send_invocation_outcome(
                self.on_invocation_trigger, signals.invocation_trigger, result
            )
            result.set_result(
                self._publish(result, task_id, options, is_async=hook_options["is_async"])
            )
        except BaseException:
            if store is not None and unique_key is not None:
                # Nothing was published: a lock left behind would refuse every call until it
                # goes stale.
                store.release(
                    task_id=task_id,
                    unique_key=unique_key,
                    ignore_key=None,
                    ignore_ttl=None,
                    task_name=self.name,
                )
            raise

    def _trigger_options(
        self, result: ResultWrapper, task_id: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Resolve eta, expiry, limits and headers; update the publish ``options`` in place.

        Returns:
            The options the trigger, unique and ignored hooks see.
        """
        trigger_time = timezone.now()
        countdown = options.pop("countdown", None)
        if countdown is not None:
            options["eta"] = trigger_time + timedelta(seconds=countdown)
        time_limit = options.get("time_limit", self.time_limit)
        stale_time_limit = options.pop("stale_time_limit", None)
        headers = options["headers"] = {
            **(options.get("headers") or {}),
            INVOCATION_ID_HEADER: result.invocation_id,
        }
        if self.unique:
            headers[UNIQUE_KEY_HEADER] = self.unique_key_generator(
                settings.UNIQUE_TASK_KEY_PREFIX, result.args, result.kwargs
            )
            if "expires" not in options and time_limit and stale_time_limit > time_limit:
                # A message still queued when its lock goes stale would run beside a newer one.
                options["expires"] = trigger_time + timedelta(seconds=stale_time_limit - time_limit)
        if self.ignore_task_timedelta is not None:
            headers[IGNORE_KEY_HEADER] = self.unique_key_generator(
                settings.IGNORE_TASK_KEY_PREFIX, result.args, result.kwargs
            )
        expires = options.get("expires")
        return {
            **result.options,
            "task_id": task_id,
            "trigger_time": trigger_time,
            "time_limit": time_limit,
            "soft_time_limit": options.get("soft_time_limit", self.soft_time_limit),
            "eta": options.get("eta"),
            "countdown": None,
            "expires": trigger_time + timedelta(seconds=expires)
            if isinstance(expires, (int, float))
            else expires,
            "stale_time_limit": stale_time_limit,
            "headers": headers,
        }

    @staticmethod
    def _lock_ttl(hook_options: Mapping[str, Any]) -> float | None:
        """Return how long the lock lives: the stale time limit, plus any wait for the eta."""
        stale_time_limit: float | None = hook_options["stale_time_limit"]
        if stale_time_limit is None:
            return None
        eta = hook_options["eta"]
        delay = (eta - hook_options["trigger_time"]).total_seconds() if eta else 0.0
        return stale_time_limit + max(delay, 0.0)

    def _join_or_ignore(self, result: ResultWrapper, holder: str | None) -> None:
        """Finish a call that does not trigger: join the holder's task, or be ignored."""
        hook_options = dict(result.options, task_id=holder)
        result.set_options(hook_options)
        if holder is None:
            result.set_result(IgnoredResult())
            self._send_invocation_outcome(
                self.on_invocation_ignored, signals.invocation_ignored, result
            )
        else:
            result.set_result(self.AsyncResult(holder))
            self._send_invocation_outcome(
                self.on_invocation_unique, signals.invocation_unique, result
            )

    def _publish(
        self, result: ResultWrapper, task_id: str, options: dict[str, Any], *, is_async: bool
    ) -> AsyncResult[Any] | EagerResult[Any]:
        """Publish the call (or run it here, when eager or for ``apply``), bypassing our hooks."""
        if settings.AUTO_SQS_MESSAGE_GROUP_ID:
            options.setdefault("MessageGroupId", task_id)
        if is_async:  # runs here through apply() when task_always_eager is set
            return Task.apply_async(self, result.args, result.kwargs, task_id=task_id, **options)
        return Task.apply(self, result.args, result.kwargs, task_id=task_id, **options)

    def _send_invocation_outcome(
        self, hook: Any, signal: signals.EventSignal, result: ResultWrapper
    ) -> None:
        options = result.options
        task_id = options["task_id"]
        hook(result.invocation_id, result.args, result.kwargs, task_id, options, result)
        if signal.receivers:
            signal.send(
                self,
                invocation_id=result.invocation_id,
                args=result.args,
                kwargs=result.kwargs,
                task_id=task_id,
                options=options,
                result=result,
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
        options = result.options
        task_id = result.id
        self.on_invocation_timeout(
            result.invocation_id, result.args, result.kwargs, task_id, ex, options, result
        )
        if signals.invocation_timeout.receivers:
            signals.invocation_timeout.send(
                self,
                invocation_id=result.invocation_id,
                args=result.args,
                kwargs=result.kwargs,
                task_id=task_id,
                ex=ex,
                options=options,
                result=result,
            )

    def _stale_time_limit(self, stale_time_limit: float | None, time_limit: float | None) -> float:
        """Return the stale time limit of a unique call: call, task, settings, or derived.

        Raises:
            CeleryError: none is set and none can be derived.
        """
        for candidate in (
            stale_time_limit,
            self.stale_time_limit,
            settings.DEFAULT_TASK_STALE_TIME_LIMIT,
        ):
            if candidate is not None:
                return float(candidate)
        time_limit = time_limit or self.time_limit
        waiting = self.max_queue_waiting_time or settings.DEFAULT_TASK_MAX_QUEUE_WAITING_TIME
        if time_limit and waiting:
            attempt = float(time_limit) + float(waiting)
            delays = self.default_retry_delays
            autoretry_for = getattr(self, "autoretry_for", ())
            if autoretry_for and delays:
                return attempt * (len(delays) + 1) + sum(delays)
            if autoretry_for and self.max_retries:
                return (attempt + self.default_retry_delay) * self.max_retries + attempt
            return attempt
        msg = (
            f"unique task {self.name!r} needs a stale time limit: set stale_time_limit on the "
            "task or the call, or the DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT "
            "setting, or a time limit with DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_MAX_QUEUE_"
            "WAITING_TIME"
        )
        raise CeleryError(msg)

    def _invocation_id(self, request: Context) -> str:
        """Return the request's invocation id; a message without one gets a fresh one, kept."""
        invocation_id: str | None = read_header(request, INVOCATION_ID_HEADER)
        if invocation_id is None:
            invocation_id = new_task_id()
            # Celery's shared default request (on_failure after a hard time limit runs in the
            # worker's main process, outside any request) must not keep an id for later tasks.
            if not request.called_directly:
                setattr(request, INVOCATION_ID_HEADER, invocation_id)
        return invocation_id

    def _ignore_key(self, request: Context) -> str:
        ignore_key: str | None = read_header(request, IGNORE_KEY_HEADER)
        if ignore_key is None:  # published by something other than a DjangoTask
            ignore_key = self.unique_key_generator(
                settings.IGNORE_TASK_KEY_PREFIX, request.args, request.kwargs
            )
        return ignore_key

    def _settle(self, request: Context, *, succeeded: bool) -> None:
        """Release the lock of the task's last attempt (and open its ignore window).

        A lock store error is logged, not raised: it must neither hide the task's own exception
        nor turn a success into a failure and lose its result. The lock then expires after its
        stale time limit, and no ignore window opens.
        """
        try:
            self._release(request, succeeded=succeeded)
        except Exception:
            logger.exception(
                "could not settle the unique lock and ignore window of task %s[%s]; "
                "the lock expires on its own",
                self.name,
                request.id,
            )

    def _release(self, request: Context, *, succeeded: bool) -> None:
        unique_key: str | None = read_header(request, UNIQUE_KEY_HEADER)
        ignore_key = ignore_ttl = None
        if succeeded and self.ignore_task_after_success and self.ignore_task_timedelta is not None:
            ignore_key = self._ignore_key(request)
            ignore_ttl = _seconds(self.ignore_task_timedelta)
        if unique_key is not None or ignore_key is not None:
            get_lock_store().release(
                task_id=str(request.id),
                unique_key=unique_key,
                ignore_key=ignore_key,
                ignore_ttl=ignore_ttl,
                task_name=self.name,
            )
