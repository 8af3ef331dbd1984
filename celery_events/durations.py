"""Durations as the library takes them: seconds as a number, or a ``timedelta``.

Every limit and window (``stale_time_limit``, ``ignore_task_timedelta``,
``max_queue_waiting_time``, the settings of the same kind) goes through :func:`positive_seconds`
where it is given, so that a value of 0 or less, or of the wrong type, is refused there with a
message naming it, instead of becoming a lock of a millisecond further on.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = ["positive_seconds"]


def positive_seconds(value: object, what: str) -> float:
    """Return ``value`` in seconds, refusing anything but a positive number or timedelta.

    Args:
        value: seconds as an ``int`` or ``float``, or a ``timedelta``.
        what: the name of the option or setting the value was given for, for the message.

    Raises:
        TypeError: ``value`` is neither a number nor a timedelta (a ``bool`` is refused too).
        ValueError: ``value`` is 0 or less, or not finite.
    """
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        msg = f"{what} must be seconds (a number) or a timedelta, not {value!r}"
        raise TypeError(msg)
    if not 0 < result < float("inf"):
        msg = f"{what} must be more than 0 seconds, not {value!r}"
        raise ValueError(msg)
    return result
