"""The event bus: one blinker signal per invocation and task lifecycle hook.

Every signal's sender is the task instance. The kwargs are those of the hook method of the same
name on :class:`~celery_events.task.DjangoTask`; the four worker-side signals carry
``invocation_id`` as well. Connect with blinker's usual API::

    from celery_events import signals

    @signals.task_failure.connect
    def page_someone(task, *, invocation_id, task_id, exc, **kwargs):
        ...

Policy: a receiver that raises an ordinary exception does not break anything. Its exception is
logged on the ``celery_events`` logger with its traceback, the other receivers still run, and
neither the task nor the caller sees it. This is the opposite of plain blinker, where the
exception propagates: an event bus for observability must never change what the observed code
does.

Task control is not contained: Celery's ``SoftTimeLimitExceeded``, ``TimeLimitExceeded`` and
``Terminated`` (raised into whatever code runs when a limit fires or a task is terminated, a
receiver included), ``Retry``, ``Ignore`` and ``Reject``, and anything that is not an
``Exception`` (``KeyboardInterrupt``, ``SystemExit``), propagate out of ``send`` as they would
from the task's body, and receivers not yet called are not called. A soft time limit that
fires in a slow ``task_start`` receiver therefore fails the task instead of letting its body run
past the limit.

With no receiver connected, sending a signal costs one attribute check.
"""

from __future__ import annotations

import logging
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast
from weakref import ref

from billiard.exceptions import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded
from blinker import ANY, NamedSignal, Namespace
from celery.exceptions import Ignore, Reject, Retry
from celery.local import Proxy

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "ALL_SIGNALS",
    "TASK_CONTROL_EXCEPTIONS",
    "EventSignal",
    "invocation_apply",
    "invocation_failure",
    "invocation_ignored",
    "invocation_timeout",
    "invocation_trigger",
    "invocation_unique",
    "namespace",
    "task_failure",
    "task_retry",
    "task_start",
    "task_success",
]

logger: Final = logging.getLogger("celery_events")

F = TypeVar("F", bound="Callable[..., Any]")

TASK_CONTROL_EXCEPTIONS: Final = (
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    Terminated,
    Retry,
    Ignore,
    Reject,
)
"""The exceptions that steer a task; a receiver's are never contained (see the module's policy)."""


class EventSignal(NamedSignal):
    """A blinker signal whose receivers cannot break the sender or each other.

    A receiver's ordinary exception is logged and contained; task control
    (:data:`TASK_CONTROL_EXCEPTIONS`, and anything that is not an ``Exception``) propagates.

    Args:
        name: the signal's name.
        doc: what the event means, and its keyword arguments.
        fields: the names of the event's keyword arguments, in the order :meth:`emit` takes
            their values.

    A receiver may be connected to one task: ``signal.connect(receiver, sender=my_task)``,
    where ``my_task`` may be the lazy proxy that ``@app.task`` returns.

    Sending runs on every call of every task, so the receivers of each sender are looked up
    once and kept until a receiver connects or disconnects; that is only done while every
    receiver of the signal is connected strongly (``weak=False``, as the exporters connect),
    since a weakly connected one may go away at any time.
    """

    def __init__(self, name: str, doc: str | None = None, fields: Sequence[str] = ()) -> None:
        super().__init__(name, doc)
        self.fields: tuple[str, ...] = tuple(fields)
        # id(sender) -> (sender, its receivers); the sender is kept to tell a reused id apart.
        self._receivers_by_sender: dict[int, tuple[Any, tuple[Callable[..., Any], ...]]] = {}
        self._all_strong = True

    def emit(self, sender: Any, /, *values: Any) -> None:
        """Send the event, its keyword arguments given by value in the order of ``fields``.

        With no receiver connected, this costs one attribute check.

        Args:
            sender: the task instance the event is about.
            *values: one value per name of ``fields``.

        Raises:
            Exception: a receiver raised one of :data:`TASK_CONTROL_EXCEPTIONS`, or something
                that is not an ``Exception``.
        """
        if self.receivers and not self.is_muted:
            kwargs = dict(zip(self.fields, values))  # noqa: B905 - the fields are the callers'
            for receiver in self._receivers_of(sender):
                self._call(receiver, sender, kwargs)

    def connect(self, receiver: F, sender: Any = ANY, weak: bool = True) -> F:
        """Connect ``receiver`` to events of ``sender`` (a task, or ANY); return ``receiver``."""
        self._receivers_by_sender.clear()
        connected = super().connect(receiver, _unproxied(sender), weak)
        self._all_strong = self._all_strong and not weak
        return connected

    def disconnect(self, receiver: Callable[..., Any], sender: Any = ANY) -> None:
        """Disconnect ``receiver`` from events of ``sender`` (a task, or ANY)."""
        super().disconnect(receiver, _unproxied(sender))
        self._receivers_by_sender.clear()
        self._all_strong = not any(isinstance(entry, ref) for entry in self.receivers.values())

    def send(
        self,
        sender: Any | None = None,
        /,
        *,
        _async_wrapper: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Callable[..., Any], Any]]:
        """Call every receiver of ``sender``; log and skip a receiver that raises.

        Args:
            sender: the task instance the event is about.
            _async_wrapper: as in :meth:`blinker.Signal.send`, for coroutine receivers.
            **kwargs: the event's keyword arguments, passed to every receiver.

        Returns:
            ``(receiver, return value)`` pairs of the receivers that returned.

        Raises:
            Exception: a receiver raised one of :data:`TASK_CONTROL_EXCEPTIONS`; it propagates,
                as does anything that is not an ``Exception``.
        """
        if not self.receivers or self.is_muted:
            return []
        results = []
        for receiver in self._receivers_of(sender):
            if _async_wrapper is not None and iscoroutinefunction(receiver):
                receiver = _async_wrapper(receiver)  # noqa: PLW2901
            returned = self._call(receiver, sender, kwargs)
            if returned is not _RAISED:
                results.append((receiver, returned))
        return results

    def _receivers_of(self, sender: Any) -> tuple[Callable[..., Any], ...]:
        cached = self._receivers_by_sender.get(id(sender))
        if cached is not None and cached[0] is sender:
            return cached[1]
        receivers = tuple(self.receivers_for(sender))
        if self._all_strong:
            self._receivers_by_sender[id(sender)] = (sender, receivers)
        return receivers

    def _call(self, receiver: Callable[..., Any], sender: Any, kwargs: dict[str, Any]) -> Any:
        """Return what ``receiver`` returns, or :data:`_RAISED` after logging its exception."""
        try:
            return receiver(sender, **kwargs)
        except TASK_CONTROL_EXCEPTIONS:
            raise
        except Exception:
            logger.exception(
                "receiver %r of signal %r raised; the other receivers still run",
                receiver,
                self.name,
            )
            return _RAISED


_RAISED: Final = object()
"""What :meth:`EventSignal._call` returns for a receiver that raised."""


def _unproxied(sender: Any) -> Any:
    # The events are sent by the task itself, never by the proxy standing in for it.
    return sender._get_current_object() if isinstance(sender, Proxy) else sender  # noqa: SLF001


class _EventNamespace(Namespace):
    def signal(
        self, name: str, doc: str | None = None, *, fields: Sequence[str] = ()
    ) -> EventSignal:
        if name not in self:
            self[name] = EventSignal(name, doc, fields)
        return cast("EventSignal", self[name])


# The fields of the three outcomes of a call.
_OUTCOME_FIELDS: Final = ("invocation_id", "args", "kwargs", "task_id", "options", "result")

namespace: Final = _EventNamespace()
"""The blinker Namespace that holds the ten signals."""

invocation_apply: Final = namespace.signal(
    "invocation_apply",
    fields=("invocation_id", "args", "kwargs", "options", "result"),
    doc="""A caller applied the task (apply, apply_async or an *_on_commit variant).

    kwargs: invocation_id, args, kwargs, options, result. Sent in the caller's process before
    anything is published; for an on-commit call, before the transaction commits.
    """,
)
invocation_trigger: Final = namespace.signal(
    "invocation_trigger",
    fields=_OUTCOME_FIELDS,
    doc="""The call was published to the broker (or run, when eager).

    kwargs: invocation_id, args, kwargs, task_id, options, result. Sent in the caller's process;
    for an on-commit call, after the transaction committed.
    """,
)
invocation_unique: Final = namespace.signal(
    "invocation_unique",
    fields=_OUTCOME_FIELDS,
    doc="""The call of a unique task found the same call in progress and joined it.

    kwargs: invocation_id, args, kwargs, task_id (the holder's), options, result.
    """,
)
invocation_ignored: Final = namespace.signal(
    "invocation_ignored",
    fields=_OUTCOME_FIELDS,
    doc="""The call was ignored: the same call succeeded within ignore_task_timedelta.

    kwargs: invocation_id, args, kwargs, task_id (None), options, result.
    """,
)
invocation_failure: Final = namespace.signal(
    "invocation_failure",
    fields=("invocation_id", "args", "kwargs", "task_id", "exc", "options", "result"),
    doc="""The call could not be triggered or published; nothing runs.

    kwargs: invocation_id, args, kwargs, task_id (the id it was to be published with), exc,
    options, result. Sent in the caller's process when the lock store cannot be reached, the
    arguments cannot be encoded or the broker refuses the message: after ``invocation_apply``,
    or after ``invocation_trigger`` when the publish itself failed. A plain call then raises
    ``exc`` to its caller; an on-commit call, whose transaction has committed, keeps it on its
    result (``state`` is ``'FAILURE'``, ``get()`` raises it).

    .. versionadded:: 0.1.0
    """,
)
invocation_timeout: Final = namespace.signal(
    "invocation_timeout",
    fields=("invocation_id", "args", "kwargs", "task_id", "ex", "options", "result"),
    doc="""The caller waited for the result longer than its timeout.

    kwargs: invocation_id, args, kwargs, task_id, ex (the TimeoutError), options, result.
    """,
)
task_start: Final = namespace.signal(
    "task_start",
    fields=("invocation_id", "task_id", "args", "kwargs"),
    doc="""An attempt of the task started (worker, or the caller's process when eager).

    kwargs: invocation_id, task_id, args, kwargs.
    """,
)
task_retry: Final = namespace.signal(
    "task_retry",
    fields=("invocation_id", "task_id", "args", "kwargs", "exc", "eta"),
    doc="""The attempt failed and the task will be retried.

    kwargs: invocation_id, task_id, args, kwargs, exc, eta (when the next attempt is due).
    """,
)
task_failure: Final = namespace.signal(
    "task_failure",
    fields=("invocation_id", "task_id", "args", "kwargs", "exc", "einfo"),
    doc="""The attempt failed and the task will not be retried.

    kwargs: invocation_id, task_id, args, kwargs, exc, einfo.
    """,
)
task_success: Final = namespace.signal(
    "task_success",
    fields=("invocation_id", "task_id", "args", "kwargs", "retval"),
    doc="""The attempt succeeded.

    kwargs: invocation_id, task_id, args, kwargs, retval.
    """,
)

ALL_SIGNALS: Final = (
    invocation_apply,
    invocation_trigger,
    invocation_unique,
    invocation_ignored,
    invocation_failure,
    invocation_timeout,
    task_start,
    task_retry,
    task_failure,
    task_success,
)
"""The ten signals, in lifecycle order."""
