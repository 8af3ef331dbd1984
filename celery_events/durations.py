"""Durations as the library takes them: seconds as a number, or a ``timedelta``.

Every limit and window (``stale_time_limit``, ``ignore_task_timedelta``,
``max_queue_waiting_time``, the settings of the same kind) goes through :func:`positive_seconds`
where it is given, and ``default_retry_delays`` through :func:`retry_delays`, so that a value of
0 or less, or of the wrong type, is refused there with a message naming it, instead of becoming
a lock of a millisecond further on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

__all__ = ["positive_seconds", "retry_delays"]


def _seconds(value: object, what: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    msg = f"{what} must be seconds (a number) or a timedelta, not {value!r}"
    raise TypeError(msg)


def positive_seconds(value: object, what: str) -> float:
    """Return ``value`` in seconds, refusing anything but a positive number or timedelta.

    Args:
        value: seconds as an ``int`` or ``float``, or a ``timedelta``.
        what: the name of the option or setting the value was given for, for the message.

    Raises:
        TypeError: ``value`` is neither a number nor a timedelta (a ``bool`` is refused too).
        ValueError: ``value`` is 0 or less, or not finite.
    """
    result = _seconds(value, what)
    if not 0 < result < float("inf"):
        msg = f"{what} must be more than 0 seconds, not {value!r}"
        raise ValueError(msg)
    return result


def retry_delays(values: object, what: str) -> tuple[float, ...]:
    """Return retry delays as seconds: each a number or timedelta of 0 or more.

    Args:
        values: the delays, one per retry (a list or tuple).
        what: the name of the option, for the message.

    Raises:
        TypeError: ``values`` is not a list or tuple, or a delay is not seconds or a timedelta.
        ValueError: a delay is less than 0, or not finite.
    """
    if not isinstance(values, Iterable) or isinstance(values, (str, bytes)):
        msg = f"{what} must be a list or tuple of delays, one per retry, not {values!r}"
        raise TypeError(msg)
    delays = tuple(_seconds(value, f"each of {what}") for value in values)
    if not all(0 <= delay < float("inf") for delay in delays):
        msg = f"{what} must be 0 seconds or more each, not {values!r}"
        raise ValueError(msg)
    return delays
