"""How the options of one DjangoTask call are resolved: ids, limits, eta, expiry and headers.

The caller's side of a call (:meth:`DjangoTask._apply <celery_events.task.DjangoTask>`) asks this
module what the call's invocation id is, whether a canvas waits on its task id, how long its
unique lock lives, and which options and headers it is published with. Nothing here talks to
Redis or to the broker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from celery.exceptions import CeleryError
from django.utils import timezone

from .config import SETTING_PREFIX, settings
from .durations import positive_seconds
from .headers import (
    IGNORE_KEY_HEADER,
    INVOCATION_ID_HEADER,
    RESERVED_HEADERS,
    STALE_TIME_LIMIT_HEADER,
    UNIQUE_KEY_HEADER,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import celery_events.results

    from .task import DjangoTask

__all__ = [
    "BOUND_OPTIONS",
    "invocation_id_of",
    "is_bound",
    "lock_ttl",
    "stale_time_limit",
    "trigger_options",
]

BOUND_OPTIONS: Final = ("link", "link_error", "chord", "group_id", "chain")
"""Options that tie more work to a call's task id: callbacks, errbacks, chord, group, chain."""


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


def stale_time_limit(
    task: DjangoTask, stale_time_limit: float | None, time_limit: float | None
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
    if settings.DEFAULT_TASK_STALE_TIME_LIMIT is not None:
        return positive_seconds(
            settings.DEFAULT_TASK_STALE_TIME_LIMIT,
            f"{SETTING_PREFIX}DEFAULT_TASK_STALE_TIME_LIMIT",
        )
    time_limit = time_limit or task.time_limit
    waiting = task.max_queue_waiting_time or settings.DEFAULT_TASK_MAX_QUEUE_WAITING_TIME
    if time_limit and waiting:
        attempt = float(time_limit) + positive_seconds(
            waiting, f"max_queue_waiting_time of task {task.name!r}"
        )
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
    task: DjangoTask,
    result: celery_events.results.ResultWrapper,
    task_id: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Resolve eta, expiry, limits and headers; update the publish ``options`` in place.

    The headers are the caller's, with the library's own names
    (:data:`~celery_events.headers.RESERVED_HEADERS`) replaced by the call's invocation id when
    it is not the task id, and, as the task has them, its lock's key and stale time limit and
    its ignore window's key.

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
    caller_headers = options.get("headers")
    headers = options["headers"] = (
        {name: value for name, value in caller_headers.items() if name not in RESERVED_HEADERS}
        if caller_headers
        else {}
    )
    if result.invocation_id != task_id:  # the worker takes the task id otherwise
        headers[INVOCATION_ID_HEADER] = result.invocation_id
    if task.unique:
        headers[UNIQUE_KEY_HEADER] = task.unique_key_generator(
            settings.UNIQUE_TASK_KEY_PREFIX, result.args, result.kwargs
        )
        headers[STALE_TIME_LIMIT_HEADER] = limit
        if "expires" not in options and time_limit and limit > time_limit:
            # A message still queued when its lock goes stale would run beside a newer one.
            options["expires"] = trigger_time + timedelta(seconds=limit - time_limit)
    if task.ignore_task_timedelta is not None:
        headers[IGNORE_KEY_HEADER] = task.unique_key_generator(
            settings.IGNORE_TASK_KEY_PREFIX, result.args, result.kwargs
        )
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
