"""What every exporter shares: its interface, signal wiring, option checks, work in flight."""

from __future__ import annotations

from collections import OrderedDict
from contextlib import suppress
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Protocol, TypeVar

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from celery.utils.dispatch import Signal as CelerySignal
    from django.dispatch import Signal as DjangoSignal

    from celery_events.signals import EventSignal

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "Exporter",
    "InFlight",
    "SignalExporter",
    "check_option",
]

DEFAULT_MAX_IN_FLIGHT: Final = 10_000
"""How many calls or attempts an exporter follows at once, by default (option ``max_in_flight``)."""

K = TypeVar("K")
V = TypeVar("V")


class Exporter(Protocol):
    """What the EXPORTERS setting names: a class built with its options as keyword arguments.

    ``connect()`` subscribes the exporter to the signals of :mod:`celery_events.signals`;
    ``disconnect()`` undoes that. Any class with these two methods can be named in the setting by
    its dotted path; an option the class does not take as a keyword argument is refused.

    .. versionadded:: 0.1.0
    """

    def connect(self) -> None:
        """Connect the exporter's receivers to the signals."""

    def disconnect(self) -> None:
        """Disconnect the receivers that :meth:`connect` connected."""


class SignalExporter:
    """An exporter made of one receiver per signal, kept in ``receivers``.

    Subclasses name themselves in ``name`` (the name the setting uses) and fill ``receivers`` in
    ``__init__``: signals of the bus; Celery's ``task_postrun`` where an exporter must clean up
    after an attempt that sent no end event (a task that raised ``Ignore`` or ``Reject``); and
    Celery's or a neighbouring tool's signals where an exporter works beside that tool
    (:mod:`celery_events.exporters.neighbours`). Receivers are connected strongly: the exporter
    holds them until it disconnects.
    """

    name: ClassVar[str]
    receivers: Mapping[EventSignal | CelerySignal | DjangoSignal, Callable[..., None]]

    def connect(self) -> None:
        """Connect every receiver to its signal."""
        for signal, receiver in self.receivers.items():
            signal.connect(receiver, weak=False)

    def disconnect(self) -> None:
        """Disconnect every receiver from its signal."""
        for signal, receiver in self.receivers.items():
            signal.disconnect(receiver)

    def in_flight(self, max_in_flight: int) -> InFlight[Any, Any]:
        """Return an empty :class:`InFlight` bounded by the ``max_in_flight`` option.

        Raises:
            ImproperlyConfigured: ``max_in_flight`` is not a positive int.
        """
        check_option(
            self.name,
            "max_in_flight",
            max_in_flight,
            valid=type(max_in_flight) is int and max_in_flight > 0,
            expected="a positive int",
        )
        return InFlight(max_in_flight)


def check_option(exporter: str, option: str, value: object, *, valid: bool, expected: str) -> None:
    """Refuse a bad option value, naming the exporter, the option and the value.

    Args:
        exporter: the exporter's name in the setting.
        option: the option's name.
        value: the value the setting gave.
        valid: whether the value is acceptable.
        expected: what the option takes, as a phrase ("True or False").

    Raises:
        ImproperlyConfigured: ``valid`` is false.
    """
    if not valid:
        msg = f"option {option!r} of exporter {exporter!r} must be {expected}, not {value!r}"
        raise ImproperlyConfigured(msg)


class InFlight(Generic[K, V]):
    """Work in progress by key (a span, a start time), at most ``maxsize`` entries, thread-safe.

    Adding past the bound drops the oldest entry, so that starts whose end never comes (an
    on-commit call whose transaction rolled back, a task that raised ``Ignore``) cannot make it
    grow for ever. A dropped entry's end, if it comes after all, finds nothing and is skipped.

    Every operation is one call of the ordered dict, which is atomic, so no lock is taken: this
    runs on every event of every call. Threads adding past the bound at once may each drop an
    entry, leaving fewer than ``maxsize`` for a moment.

    Args:
        maxsize: the most entries kept.
    """

    __slots__ = ("_entries", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[K, V] = OrderedDict()

    def add(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key``; drop the oldest entry when past the bound."""
        entries = self._entries
        entries[key] = value
        if len(entries) > self.maxsize:
            with suppress(KeyError):  # another thread emptied it meanwhile
                entries.popitem(last=False)

    def get(self, key: K) -> V | None:
        """Return the value under ``key``, or None when there is none."""
        return self._entries.get(key)

    def pop(self, key: K) -> V | None:
        """Remove and return the value under ``key``, or None when there is none."""
        return self._entries.pop(key, None)

    def __len__(self) -> int:
        """Return how many entries are kept."""
        return len(self._entries)

    def __bool__(self) -> bool:
        """Return whether any entry is kept."""
        return bool(self._entries)
