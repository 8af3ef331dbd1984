"""The observability tools users already run beside the exporters, found where they are connected.

opentelemetry-instrumentation-celery (``CeleryInstrumentor``, which ``opentelemetry-instrument``
switches on by itself) makes a PRODUCER span per published message and a CONSUMER span per
attempt; django-structlog's Celery support logs the attempts of every task. Both are optional:
they are looked up by module name, and a process without them has no neighbour to find.

The exporters read what these tools connect (their receivers on Celery's signals, the spans the
instrumentor keeps on a task while they are open) and never change it.
"""

from __future__ import annotations

import importlib
import weakref
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

    from celery import Task
    from celery.utils.dispatch import Signal as CelerySignal
    from opentelemetry.trace import Span

__all__ = [
    "DJANGO_STRUCTLOG",
    "CeleryInstrumentation",
    "celery_instrumentation",
    "connected_receivers",
    "django_structlog_celery_signals",
    "django_structlog_receives",
    "owner_module",
]

DJANGO_STRUCTLOG: Final = "django_structlog"
"""django-structlog's package: the module of its receivers' classes starts with it."""


def _optional(module: str) -> Any:
    """Return the module, or None when its distribution is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def connected_receivers(signal: CelerySignal) -> Iterator[Any]:
    """Yield the receivers connected to a Celery signal, in the order it calls them.

    Args:
        signal: one of Celery's signals.
    """
    for _, receiver in signal.receivers:
        live = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
        if live is not None:
            yield live


def owner_module(receiver: object) -> str:
    """Return the module of the class whose bound method ``receiver`` is ('' for a function)."""
    owner = getattr(receiver, "__self__", None)
    return "" if owner is None else type(owner).__module__


class CeleryInstrumentation:
    """The process's ``CeleryInstrumentor`` of opentelemetry-instrumentation-celery.

    Args:
        instrumentor: the instrumentor (a singleton: every ``CeleryInstrumentor()`` is it).
        utils: its ``utils`` module, which keeps its open spans on the task.
    """

    __slots__ = ("_instrumentor", "_utils")

    def __init__(self, instrumentor: Any, utils: Any) -> None:
        self._instrumentor = instrumentor
        self._utils = utils

    @property
    def active(self) -> bool:
        """Whether the instrumentor traces Celery in this process now."""
        return bool(self._instrumentor.is_instrumented_by_opentelemetry)

    @property
    def uses_span_links(self) -> bool:
        """Whether its CONSUMER spans link to their PRODUCER span instead of being its child."""
        return bool(getattr(self._instrumentor, "_use_span_links", False))

    def span(self, task: Task[Any, Any], task_id: str, *, publish: bool) -> Span | None:
        """Return the instrumentor's open span of a message: its publish's, or its attempt's.

        Args:
            task: the task of the message.
            task_id: the message's task id.
            publish: the PRODUCER span of its publish (True), or the CONSUMER span of the
                attempt that runs it (False).

        Returns:
            The span while it is open (between Celery's ``before_task_publish`` and
            ``after_task_publish``, or ``task_prerun`` and ``task_postrun``), else None.
        """
        kept = self._utils.retrieve_context(task, task_id, is_publish=publish)
        return None if kept is None else kept[0]

    def runs_after(self, signal: CelerySignal, receiver: object) -> bool:
        """Return whether ``signal`` calls ``receiver``, and after a receiver of the instrumentor.

        Args:
            signal: one of Celery's signals.
            receiver: a receiver that may be connected to it.
        """
        instrumentor = self._instrumentor
        seen = False
        for connected in connected_receivers(signal):
            if getattr(connected, "__self__", None) is instrumentor:
                seen = True
            elif connected == receiver:
                return seen
        return False


def celery_instrumentation() -> CeleryInstrumentation | None:
    """Return the process's Celery instrumentation, or None when it is not installed."""
    package = _optional("opentelemetry.instrumentation.celery")
    if package is None:
        return None
    return CeleryInstrumentation(package.CeleryInstrumentor(), package.utils)


def django_structlog_receives(signal: CelerySignal) -> bool:
    """Return whether django-structlog's Celery support logs what ``signal`` tells.

    Args:
        signal: one of Celery's signals (``task_prerun``, ``task_success``...).
    """
    return any(
        owner_module(receiver).startswith(DJANGO_STRUCTLOG)
        for receiver in connected_receivers(signal)
    )


def django_structlog_celery_signals() -> Any:
    """Return django-structlog's ``django_structlog.celery.signals``, or None without it."""
    return _optional(f"{DJANGO_STRUCTLOG}.celery.signals")
