"""The caller's way of one DjangoTask call, top to bottom in the order it runs.

1. :func:`apply` resolves the call's ids and options, sends ``invocation_apply`` and triggers the
   call at once, or when the transaction commits (``*_on_commit``).
2. :func:`trigger` computes the call's keys and publish options (:mod:`celery_events.options`)
   and asks the lock store to admit it: the ignore window, then the unique lock, in one round
   trip.
3. An admitted call sends ``invocation_trigger`` and is published; any other joins the call that
   holds its lock (``invocation_unique``) or is ignored (``invocation_ignored``). A call that a
   canvas or a callback waits on is published as a *stand-in* instead (see
   :mod:`celery_events.worker`), so that its own task id gets an outcome.
4. Every message goes through the task's ``_apply_and_get_result`` seam and, from there, to
   Celery's own ``apply_async`` or ``apply`` (:func:`hand_over`).
5. A call that could not be triggered or published sends ``invocation_failure``; a wait for its
   result that runs out sends ``invocation_timeout`` (:func:`timed_out`).

Each event calls the task's hook of the same name, then sends its signal.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from celery import Task
from celery.app.routes import MapRoute
from django.db import transaction
from django.utils import timezone
from kombu.utils.uuid import uuid as new_task_id

from . import options as call_options
from . import signals
from .config import settings
from .headers import IGNORE_KEY_HEADER, STAND_IN_HEADER, UNIQUE_KEY_HEADER, stand_in_header
from .locks import Outcome, get_lock_store, release_lock
from .results import FailedTriggerResult, IgnoredResult

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from celery.exceptions import TimeoutError  # noqa: A004 - what Celery raises

    from .results import ResultWrapper
    from .typing import CalledTask

__all__ = ["apply", "continues_attempt", "hand_over", "publish", "timed_out", "trigger"]

logger: Final = logging.getLogger("celery_events")

# The task id this thread is handing to Celery's own apply_async or apply for a call already
# admitted: Celery re-enters apply() with it when task_always_eager is set.
_handing_over: ContextVar[str | None] = ContextVar("celery_events_handing_over", default=None)


def continues_attempt(task: CalledTask, task_id: str) -> bool:
    """Tell a call that continues one already admitted from a new call with a given id.

    Two cases, neither of which a caller's options can fake: Celery re-entering ``apply`` for
    a call this thread is handing over (``task_always_eager``), and a re-publish of the running
    attempt's own task id from inside that attempt (a retry, a stand-in's check). Such a call
    passes straight to Celery.

    Args:
        task: the task called.
        task_id: the task id the call was given.
    """
    if _handing_over.get() == task_id:
        return True
    request = task.request_stack.top
    return request is not None and not request.called_directly and request.id == task_id


def apply(
    task: CalledTask,
    args: Any,
    kwargs: Any,
    task_id: str | None,
    options: dict[str, Any],
    *,
    is_async: bool,
    is_on_commit: bool = False,
    using: str | None = None,
) -> ResultWrapper:
    """Apply a call: send ``invocation_apply``, then trigger it now or when the commit comes.

    Args:
        task: the task called.
        args: the task's positional arguments.
        kwargs: the task's keyword arguments.
        task_id: the task id the caller gave, or None for a new one.
        options: Celery's ``apply_async`` options and the library's own; taken over.
        is_async: publish to the broker (``apply_async``); False runs it here (``apply``).
        is_on_commit: trigger when the transaction of database ``using`` commits.
        using: that database.

    Returns:
        The call's result, which the task's ``result_wrapper_class`` makes.

    Raises:
        CeleryError: the call's options are refused (:func:`celery_events.options.check_call`).
        TypeError: a keyword argument's name or an option's value has the wrong type.
        ValueError: a limit is 0 or less.
    """
    bound = call_options.is_bound(task_id, options)
    if options and "using" in options and not is_on_commit:
        # django-celery-extensions took it from any call: it is not the broker's.
        using = options.pop("using")
    named_invocation = call_options.invocation_id_of(options) if options else None
    # A task id the caller gave is in the hooks' options from the start, as it was in
    # django-celery-extensions' (they gain the rest when the call triggers).
    caller_options = options if task_id is None else {"task_id": task_id, **options}
    # The call's own task id is made now, so that an on-commit call has it before it
    # triggers; unless the caller names the invocation, it is the invocation id too.
    task_id = task_id or new_task_id()
    invocation_id = named_invocation or task_id
    queue = (
        options.get("queue") or getattr(task, "queue", None) or _routed_queue(task, args, kwargs)
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
    call_options.check_call(task, kwargs, options)
    result = task.result_wrapper_class(invocation_id, task, args, kwargs, hook_options)
    _send(
        task,
        signals.invocation_apply,
        task.on_invocation_apply,
        invocation_id,
        args,
        kwargs,
        hook_options,
        result,
    )
    if is_on_commit:
        transaction.on_commit(
            partial(_trigger_at_commit, task, result, task_id, options, bound=bound), using=using
        )
    else:
        trigger(task, result, task_id, options, bound=bound)
    return result


def _routed_queue(task: CalledTask, args: Any, kwargs: Any) -> str:
    """Return the queue Celery's router sends this call to; kept while routes go by name."""
    router = task.app.amqp.router
    cached = task._routed_queue_cache  # noqa: SLF001 - kept on the task, read on every call
    if cached is not None and cached[0] is router:
        return cached[1]
    queue = str(router.route({}, task.name, args, kwargs, task)["queue"].name)  # type: ignore[arg-type]  # celery-types wants a class; Celery passes the task
    if all(isinstance(route, MapRoute) for route in router.routes):  # type: ignore[attr-defined]  # untyped in celery-types
        task._routed_queue_cache = (router, queue)  # noqa: SLF001
    return queue


def _trigger_at_commit(
    task: CalledTask, result: ResultWrapper, task_id: str, options: dict[str, Any], *, bound: bool
) -> None:
    """Trigger an on-commit call; an error stays on its result, never raised from the commit.

    The transaction has committed: raising would tell its caller otherwise, and would make
    Django skip the transaction's later ``on_commit`` callbacks.
    """
    try:
        trigger(task, result, task_id, options, bound=bound)
    except Exception as exc:
        result.set_result(FailedTriggerResult(exc))
        logger.exception(
            "on-commit call %s of task %s could not be triggered; the error is on its "
            "result, and the transaction's later on-commit callbacks still run",
            result.invocation_id,
            task.name,
        )


def trigger(
    task: CalledTask, result: ResultWrapper, task_id: str, options: dict[str, Any], *, bound: bool
) -> None:
    """Admit the call, then publish it (or, for a ``bound`` call, a stand-in) or join it.

    Args:
        task: the task called.
        result: the call's result, which gets the outcome.
        task_id: the call's task id.
        options: the publish options, resolved in place.
        bound: whether a canvas or a callback waits on the call's task id.

    Raises:
        Exception: the lock store, the encoding or the publish failed; the call's
            ``invocation_failure`` was sent.
    """
    args, kwargs = result.args, result.kwargs
    try:
        ignore_key = (
            task._get_ignore_key(args, kwargs)  # noqa: SLF001 - the key seam
            if call_options.checks_ignore_window(task, options.get("ignore_task_after_success"))
            else None
        )
        hook_options = call_options.trigger_options(
            task,
            result,
            task_id,
            options,
            unique_key=task._get_unique_key(args, kwargs),  # noqa: SLF001
            ignore_key=ignore_key,
        )
        result.set_options(hook_options)
        is_async = hook_options["is_async"]
        outcome, holder = _admit(task, task_id, hook_options, result)
        if outcome is Outcome.TRIGGER:
            _publish_admitted(task, result, task_id, options, is_async=is_async)
        elif bound:
            _publish_stand_in(task, result, task_id, options, holder, is_async=is_async)
        else:
            _join_or_ignore(task, result, holder)
    except Exception as exc:
        _send(
            task,
            signals.invocation_failure,
            task.on_invocation_failure,
            result.invocation_id,
            args,
            kwargs,
            task_id,
            exc,
            result.options,
            result,
        )
        raise


def _admit(
    task: CalledTask, task_id: str, hook_options: Mapping[str, Any], result: ResultWrapper
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
        task_name=task.name,
        arguments=(result.args, result.kwargs),
    )
    if admission.outcome is Outcome.UNIQUE and admission.task_id == task_id:
        return Outcome.TRIGGER, task_id
    return admission.outcome, admission.task_id


def _publish_admitted(
    task: CalledTask,
    result: ResultWrapper,
    task_id: str,
    options: dict[str, Any],
    *,
    is_async: bool,
) -> None:
    """Send ``invocation_trigger`` and publish; release the lock if nothing was published."""
    try:
        _send_outcome(task, signals.invocation_trigger, task.on_invocation_trigger, result)
        result.set_result(publish(task, result, task_id, options, is_async=is_async))
    except BaseException:
        # A lock left behind would refuse every call until it goes stale.
        release_lock(task_id, options["headers"].get(UNIQUE_KEY_HEADER), task.name)
        raise


def _publish_stand_in(
    task: CalledTask,
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
    published before the outcome event, so that a failed publish is the call's only outcome;
    run here (eager, ``apply()``), it runs after it, as it would on a worker.
    """
    options["headers"][STAND_IN_HEADER] = stand_in_header(holder)
    result.set_options(dict(result.options, task_id=holder))
    published = is_async and not task.app.conf.task_always_eager
    if not published:
        _send_join_or_ignore(task, result, holder)
    stand_in = publish(task, result, task_id, options, is_async=is_async)
    result.set_result(stand_in if holder is not None else IgnoredResult(stand_in))
    if published:
        _send_join_or_ignore(task, result, holder)


def _join_or_ignore(task: CalledTask, result: ResultWrapper, holder: str | None) -> None:
    """Finish a call that does not trigger: it joins ``holder``'s call, or is ignored (None)."""
    result.set_options(dict(result.options, task_id=holder))
    result.set_result(IgnoredResult() if holder is None else task.AsyncResult(holder))
    _send_join_or_ignore(task, result, holder)


def _send_join_or_ignore(task: CalledTask, result: ResultWrapper, holder: str | None) -> None:
    if holder is None:
        _send_outcome(task, signals.invocation_ignored, task.on_invocation_ignored, result)
    else:
        _send_outcome(task, signals.invocation_unique, task.on_invocation_unique, result)


def publish(
    task: CalledTask,
    result: ResultWrapper,
    task_id: str,
    options: dict[str, Any],
    *,
    is_async: bool,
) -> Any:
    """Publish an admitted call, or a stand-in, through the task's ``_apply_and_get_result``.

    Returns:
        Celery's ``AsyncResult`` (or ``EagerResult``), as the seam gives it.
    """
    return task._apply_and_get_result(  # noqa: SLF001 - the seam of django-celery-extensions
        result,
        result.args,
        result.kwargs,
        result.invocation_id,
        is_async=is_async,
        task_id=task_id,
        **options,
    )


def hand_over(
    task: Task[Any, Any], args: Any, kwargs: Any, *, is_async: bool, **options: Any
) -> Any:
    """Give an admitted call's message to Celery: its own ``apply_async``, or ``apply``.

    What ``_apply_and_get_result`` does unless a subclass or a test overrides it.

    Args:
        task: the task called.
        args: the task's positional arguments.
        kwargs: the task's keyword arguments.
        is_async: publish to the broker; False runs it here (with ``task_always_eager``, an
            ``apply_async`` runs here too).
        **options: Celery's options, ``task_id`` and ``headers`` among them.

    Returns:
        Celery's ``AsyncResult`` (or ``EagerResult``).
    """
    task_id = options["task_id"]
    if settings.AUTO_SQS_MESSAGE_GROUP_ID:
        options.setdefault("MessageGroupId", task_id)
    token = _handing_over.set(task_id)
    try:
        if is_async:
            return Task.apply_async(task, args, kwargs, **options)
        return Task.apply(task, args, kwargs, **options)
    finally:
        _handing_over.reset(token)


def timed_out(task: CalledTask, result: ResultWrapper, ex: TimeoutError) -> None:
    """Send ``invocation_timeout``: a wait for the call's result ran out with ``ex``.

    Args:
        task: the task called.
        result: the call's result.
        ex: the ``TimeoutError`` the wait raised.
    """
    # The task id the call knows: a subclass's _apply_and_get_result may return a result of
    # its own type, which need not have an id.
    _send(
        task,
        signals.invocation_timeout,
        task.on_invocation_timeout,
        result.invocation_id,
        result.args,
        result.kwargs,
        result.options.get("task_id"),
        ex,
        result.options,
        result,
    )


def _send_outcome(
    task: CalledTask, signal: signals.EventSignal, hook: Callable[..., None], result: ResultWrapper
) -> None:
    """Send the outcome event of a call that triggered, joined or was ignored."""
    options = result.options
    _send(
        task,
        signal,
        hook,
        result.invocation_id,
        result.args,
        result.kwargs,
        options["task_id"],
        options,
        result,
    )


def _send(
    task: CalledTask, signal: signals.EventSignal, hook: Callable[..., None], *values: Any
) -> None:
    """Call the invocation hook with ``values``, then send its signal with them."""
    hook(*values)
    if signal.receivers:
        signal.emit(task, *values)
