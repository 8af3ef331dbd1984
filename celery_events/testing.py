"""Helpers for testing code that uses celery-events."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .signals import ALL_SIGNALS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["CapturedEvent", "capture_events"]


@dataclass(frozen=True)
class CapturedEvent:
    """One event sent on the bus: the signal's name, its sender (the task) and its kwargs."""

    name: str
    sender: Any
    kwargs: dict[str, Any]


@contextmanager
def capture_events() -> Iterator[list[CapturedEvent]]:
    """Record every event sent in this process while the block runs, in order.

    Events sent by a worker in another process are not seen; run the task eagerly
    (``task_always_eager``) or with an in-process worker to capture its task events::

        with capture_events() as events:
            notify_user.apply_async(args=(1,))
        assert [event.name for event in events] == ["invocation_apply", "invocation_trigger"]
    """
    events: list[CapturedEvent] = []
    receivers: list[tuple[Any, Callable[..., None]]] = []
    for signal in ALL_SIGNALS:

        def record(sender: Any, _name: str = signal.name, **kwargs: Any) -> None:
            events.append(CapturedEvent(_name, sender, kwargs))

        receivers.append((signal, signal.connect(record, weak=False)))
    try:
        yield events
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)
