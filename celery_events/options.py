"""How the options of one DjangoTask call are resolved: ids, limits, eta, expiry and headers.

The caller's way of a call (:mod:`celery_events.caller`) asks this module what the call's
invocation id is, whether a canvas waits on its task id, how long its unique lock lives, and
which options and headers it is published with. Nothing here talks to Redis or to the broker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from celery.exceptions import CeleryError
from django.utils import timezone

from .config import settings
from .durations import positive_seconds, retry_delays
from .headers import (
    AUTO_EXPIRES_HEADER,
    IGNORE_AFTER_SUCCESS_HEADER,
    IGNORE_KEY_HEADER,
    INVOCATION_ID_HEADER,
    RESERVED_HEADERS,
    STALE_TIME_LIMIT_HEADER,
    TRIGGER_TIME_HEADER,
    UNIQUE_KEY_HEADER,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import celery_events.results

    from .typing import CalledTask

__all__ = [
    "BOUND_OPTIONS",
    "check_call",
    "check_task_class",
    "checks_ignore_window",
    "invocation_id_of",
    "is_bound",
    "lock_ttl",
    "stale_time_limit",
    "trigger_options",
]

BOUND_OPTIONS: Final = ("link", "link_error", "chord", "group_id", "chain")
"""Options that tie more work to a call's task id: callbacks, errbacks, chord, group, chain."""


def check_task_class(task_class: type[Any], task_name: str) -> None:
    """Refuse a task class's bad options where the class is made; make its retry delays seconds.

    Args:
        task_class: the task's class (``@app.task`` makes one per task).
        task_name: the task's name, for the errors.

    Raises:
        CeleryError: ``ignore_task_after_success`` is set without ``ignore_task_timedelta``.
        TypeError: a limit or delay is neither seconds (a number) nor a timedelta.
        ValueError: a limit is 0 or less, or a retry delay less than 0.
    """
    for option in ("stale_time_limit", "max_queue_waiting_time", "ignore_task_timedelta"):
        value = getattr(task_class, option)
        if value is not None:
            positive_seconds(value, f"{option} of task {task_name!r}")
    if task_class.default_retry_delays is not None:
        task_class.default_retry_delays = retry_delays(
            task_class.default_retry_delays, f"default_retry_delays of task {task_name!r}"
        )
    if task_class.ignore_task_after_success and task_class.ignore_task_timedelta is None:
        msg = f"task {task_name!r} sets ignore_task_after_success but no ignore_task_timedelta"
        raise CeleryError(msg)


def invocation_id_of(options: dict[str, Any]) -> str | None:
    """Pop the caller's invocation id from ``options``: the option, or the header of that name.

    django-celery-extensions took ``invocation_id=`` as an option, and a caller may pass the id
    of a call it continues in ``headers``; either becomes the call's invocation id.

    Returns:
        The caller's id, or None when the caller gave none.

    Raises:
        CeleryError: the id is not a non-empty string, or the option and the header differ.
    """
    given = options.pop("invocation_id", None)
    headers = options.get("headers")
    if headers and INVOCATION_ID_HEADER in headers:
        header = headers[INVOCATION_ID_HEADER]
        if given is not None and header != given:
            msg = (
                f"invocation_id={given!r} and headers={{'invocation_id': {header!r}}} name two "
                "invocations; pass one"
            )
            raise CeleryError(msg)
        given = header
    if given is not None and not (isinstance(given, str) and given):
        msg = f"invocation_id must be a non-empty string, not {given!r}"
        raise CeleryError(msg)
    return given


def is_bound(task_id: str | None, options: Mapping[str, Any]) -> bool:
    """Return whether a canvas or callback waits on this call's own task id.

    True for a group, chord or chain member, a call with ``link`` or ``link_error``, and a call
    whose task id was given in advance (a frozen signature's): such a call is always published,
    as a stand-in when it joins a running call or is ignored (see :mod:`celery_events.worker`).
    """
    if task_id is not None:
        return True
    # Most calls carry none of these options: skip the lookups when there are no options.
    return bool(options) and any(options.get(name) for name in BOUND_OPTIONS)


def check_call(task: CalledTask, kwargs: Any, options: dict[str, Any]) -> None:
    """Refuse a call's bad input where it is made; resolve a unique call's stale time limit.

    The options of django-celery-extensions that are the library's own stay in ``options``
    until the call triggers, which takes them out (:func:`trigger_options`): none reaches the
    broker.

    Raises:
        TypeError: a keyword argument's name is not a string, or an option has the wrong type.
        ValueError: ``stale_time_limit`` is 0 or less.
        CeleryError: a unique task has no stale time limit from the call, the task or the
            settings; or ``ignore_task_after_success=True`` is asked of a task that has no
            ``ignore_task_timedelta``.
    """
    if kwargs and not all(isinstance(name, str) for name in kwargs):
        names = ", ".join(repr(name) for name in kwargs if not isinstance(name, str))
        msg = f"keyword arguments of a call of {task.name!r} must be named by strings, not {names}"
        raise TypeError(msg)
    if task.unique:
        options["stale_time_limit"] = stale_time_limit(
            task, options.get("stale_time_limit"), options.get("time_limit")
        )
    if not options:
        return
    limit = options.get("stale_time_limit")
    if limit is not None and not task.unique:
        options["stale_time_limit"] = positive_seconds(
            limit, f"stale_time_limit of a call of {task.name!r}"
        )
    ignore_after_success = options.get("ignore_task_after_success")
    if ignore_after_success is not None:
        if not isinstance(ignore_after_success, bool):
            msg = (
                f"ignore_task_after_success of a call of {task.name!r} must be True or False, "
                f"not {ignore_after_success!r}"
            )
            raise TypeError(msg)
        if ignore_after_success and task.ignore_task_timedelta is None:
            msg = (
                f"ignore_task_after_success=True was asked of a call of {task.name!r}, which "
                "has no ignore_task_timedelta to ignore later calls for"
            )
            raise CeleryError(msg)


def checks_ignore_window(task: CalledTask, ignore_after_success: bool | None) -> bool:
    """Return whether a call is checked against its ignore window (and carries its key).

    A call's ``ignore_task_after_success`` decides, both ways; without it, every call of a task
    with an ``ignore_task_timedelta`` is, since ``set_ignore_task`` may open the window even
    when the task does not ignore after success.
    """
    if ignore_after_success is not None:
        return ignore_after_success
    return task.ignore_task_timedelta is not None


def stale_time_limit(
    task: CalledTask, stale_time_limit: float | None, time_limit: float | None
) -> float:
    """Return a unique call's stale time limit: the call's, the task's, the settings', or derived.

    Derived from the time limit and ``max_queue_waiting_time`` (the task's or the settings'), per
    attempt and across the retries ``default_retry_delays`` or ``max_retries`` allow.

    Raises:
        CeleryError: none is set and none can be derived.
    """
    if stale_time_limit is not None:
        return positive_seconds(stale_time_limit, f"stale_time_limit of a call of {task.name!r}")
    if task.stale_time_limit is not None:
        return positive_seconds(task.stale_time_limit, f"stale_time_limit of task {task.name!r}")
    if settings.DEFAULT_TASK_STALE_TIME_LIMIT is not None:  # seconds: checked when read
        return settings.DEFAULT_TASK_STALE_TIME_LIMIT
    time_limit = time_limit or task.time_limit
    waiting = (
        positive_seconds(
            task.max_queue_waiting_time, f"max_queue_waiting_time of task {task.name!r}"
        )
        if task.max_queue_waiting_time is not None
        else settings.DEFAULT_TASK_MAX_QUEUE_WAITING_TIME
    )
    if time_limit and waiting:
        attempt = float(time_limit) + waiting
        delays = task.default_retry_delays
        autoretry_for = getattr(task, "autoretry_for", ())
        if autoretry_for and delays:
            return attempt * (len(delays) + 1) + sum(delays)
        if autoretry_for and task.max_retries:
            return (attempt + task.default_retry_delay) * task.max_retries + attempt
        return attempt
    msg = (
        f"unique task {task.name!r} needs a stale time limit: set stale_time_limit on the "
        "task or the call, or the DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT "
        "setting, or a time limit with DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_MAX_QUEUE_"
        "WAITING_TIME"
    )
    raise CeleryError(msg)


def trigger_options(
    task: CalledTask,
    result: celery_events.results.ResultWrapper,
    task_id: str,
    options: dict[str, Any],
    *,
    unique_key: str | None,
    ignore_key: str | None,
) -> dict[str, Any]:
    """Resolve eta, expiry, limits and headers; update the publish ``options`` in place.

    The library's own options (``stale_time_limit``, ``ignore_task_after_success``) are taken
    out. The headers are the caller's, with the library's own names
    (:data:`~celery_events.headers.RESERVED_HEADERS`) replaced by the call's invocation id when
    it is not the task id, and, when the call has them, its lock's key (``unique_key``) and
    stale time limit, its ignore window's key (``ignore_key``) and a call's own
    ``ignore_task_after_success``.

    Returns:
        The options the trigger, unique, ignored and failure hooks see.
    """
    # A call that triggers where it is applied does so at its apply time: one clock read.
    trigger_time = (
        timezone.now() if result.options["is_on_commit"] else result.options["apply_time"]
    )
    countdown = options.pop("countdown", None)
    if countdown is not None:
        options["eta"] = trigger_time + timedelta(seconds=countdown)
    time_limit = options.get("time_limit", task.time_limit)
    limit = options.pop("stale_time_limit", None)
    ignore_after_success = options.pop("ignore_task_after_success", None)
    caller_headers = options.get("headers")
    headers = options["headers"] = (
        {name: value for name, value in caller_headers.items() if name not in RESERVED_HEADERS}
        if caller_headers
        else {}
    )
    headers[TRIGGER_TIME_HEADER] = trigger_time.timestamp()
    if result.invocation_id != task_id:  # the worker takes the task id otherwise
        headers[INVOCATION_ID_HEADER] = result.invocation_id
    if unique_key is not None:
        headers[UNIQUE_KEY_HEADER] = unique_key
        headers[STALE_TIME_LIMIT_HEADER] = limit
        if "expires" not in options and time_limit and limit > time_limit:
            # A message still queued when its lock goes stale would run beside a newer one;
            # counted from when it is due, and not carried over by a retry.
            due = options.get("eta") or trigger_time
            options["expires"] = due + timedelta(seconds=limit - time_limit)
            headers[AUTO_EXPIRES_HEADER] = True
    if ignore_key is not None:
        headers[IGNORE_KEY_HEADER] = ignore_key
    if ignore_after_success is not None:
        headers[IGNORE_AFTER_SUCCESS_HEADER] = ignore_after_success
    expires = options.get("expires")
    return {
        **result.options,
        "task_id": task_id,
        "trigger_time": trigger_time,
        "time_limit": time_limit,
        "soft_time_limit": options.get("soft_time_limit", task.soft_time_limit),
        "eta": options.get("eta"),
        "countdown": None,
        "expires": trigger_time + timedelta(seconds=expires)
        if isinstance(expires, (int, float))
        else expires,
        "stale_time_limit": limit,
        "headers": headers,
    }


def lock_ttl(hook_options: Mapping[str, Any]) -> float | None:
    """Return how long a call's lock lives: the stale time limit, plus any wait for the eta."""
    limit: float | None = hook_options["stale_time_limit"]
    if limit is None:
        return None
    eta = hook_options["eta"]
    delay = (eta - hook_options["trigger_time"]).total_seconds() if eta else 0.0
    return limit + max(delay, 0.0)
