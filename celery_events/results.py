"""What a DjangoTask call returns: a wrapper that knows the call before and after it triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from celery.exceptions import CeleryError, TimeoutError  # noqa: A004 - what Celery raises
from celery.result import AsyncResult, EagerResult

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FailedTriggerResult", "IgnoredResult", "NotTriggeredCeleryError", "ResultWrapper"]


class NotTriggeredCeleryError(CeleryError):
    """The result of an on-commit call was asked for before its transaction committed."""


class IgnoredResult:
    """The result of a call that was ignored: the same call succeeded within its ignore window.

    Its ``state`` is ``'IGNORED'`` and ``get()`` returns None. It has no task id, except for a
    call that a canvas (or a ``link``, or a task id given in advance) waits on: its stand-in is
    published under that id and completes with None, so that what follows it runs; the rest of
    Celery's result API (``then()``, a group's joins...) is then the stand-in's result's.

    Args:
        stand_in: the published stand-in's result, for a canvas member; None otherwise.
    """

    state: ClassVar[str] = "IGNORED"

    def __init__(self, stand_in: Any = None) -> None:
        self._stand_in = stand_in
        self.id: str | None = None if stand_in is None else stand_in.id

    def __getattr__(self, name: str) -> Any:
        """Answer the rest of Celery's result API from the stand-in's result, when there is one.

        Raises:
            AttributeError: the call has no stand-in, or its result has no such attribute.
        """
        stand_in = vars(self).get("_stand_in")
        if stand_in is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(stand_in, name)

    def get(self, *args: Any, **kwargs: Any) -> None:
        """Return None at once: an ignored call has no result to wait for."""

    def ready(self) -> bool:
        """Return True: an ignored call has its outcome, None."""
        return True

    def successful(self) -> bool:
        """Return False: an ignored call did not run."""
        return False

    def failed(self) -> bool:
        """Return False: an ignored call did not run."""
        return False

    @property
    def task_id(self) -> str | None:
        """The stand-in's task id for a canvas member; None otherwise."""
        return self.id


class FailedTriggerResult:
    """The result of an on-commit call whose trigger failed after its transaction committed.

    Nothing was published. Its ``state`` is ``'FAILURE'``; ``get()`` raises the error (or
    returns it, with ``propagate=False``), as Celery's result of a failed task does.

    Args:
        exc: what the trigger raised (``LockStoreUnavailableError``, ``EncodeError``, a broker
            error...).

    .. versionadded:: 0.1.0
    """

    state: ClassVar[str] = "FAILURE"
    id: ClassVar[None] = None

    def __init__(self, exc: Exception) -> None:
        self.result = exc

    def get(self, timeout: float | None = None, propagate: bool = True, **kwargs: Any) -> Any:
        """Raise the trigger's error, or return it when ``propagate`` is False.

        Raises:
            Exception: what the trigger raised.
        """
        if propagate:
            raise self.result
        return self.result

    def ready(self) -> bool:
        """Return True: the call has its outcome."""
        return True

    def successful(self) -> bool:
        """Return False: nothing ran."""
        return False

    def failed(self) -> bool:
        """Return True: the call failed to trigger."""
        return True

    @property
    def task_id(self) -> None:
        """None: nothing was published."""
        return self.id


class _TimeoutListener(Protocol):
    def _invocation_timed_out(self, result: ResultWrapper, ex: TimeoutError) -> None: ...


class ResultWrapper:
    """The result of a DjangoTask call, usable before the call has triggered.

    Before an on-commit call triggers, ``state`` is ``'WAITING'`` and ``get()`` raises
    :class:`NotTriggeredCeleryError`; afterwards every method answers for the underlying
    ``AsyncResult`` (or ``EagerResult``, :class:`IgnoredResult` or :class:`FailedTriggerResult`).
    A ``get()`` that times out sends the ``invocation_timeout`` event before the TimeoutError
    reaches the caller.

    Args:
        invocation_id: the id every event of this call carries.
        task: the task that was called.
        args: the call's positional arguments.
        kwargs: the call's keyword arguments.
        options: the call's options, as passed to the invocation hooks.
        result: the underlying result, when the call has already triggered.
    """

    def __init__(
        self,
        invocation_id: str,
        task: _TimeoutListener,
        args: Any,
        kwargs: Any,
        options: Mapping[str, Any],
        result: Any = None,
    ) -> None:
        self.invocation_id = invocation_id
        self._task = task
        self._args = args
        self._kwargs = kwargs
        self._options = options
        self._result = result

    # Called by the default invocation hooks of DjangoTask, so that a subclass set as a task's
    # ``result_wrapper_class`` can react to them, as in django-celery-extensions.
    def on_apply(self) -> None:
        """React to the call being applied; does nothing here."""

    def on_trigger(self) -> None:
        """React to the call being triggered; does nothing here."""

    def on_unique(self) -> None:
        """React to the call joining a unique call in progress; does nothing here."""

    def on_ignored(self) -> None:
        """React to the call being ignored; does nothing here."""

    def on_timeout(self) -> None:
        """React to a wait for the result timing out; does nothing here."""

    @property
    def args(self) -> Any:
        """The call's positional arguments."""
        return self._args

    @property
    def kwargs(self) -> Any:
        """The call's keyword arguments."""
        return self._kwargs

    @property
    def options(self) -> Mapping[str, Any]:
        """The call's options, as the invocation hooks last saw them."""
        return self._options

    @property
    def async_result(self) -> Any:
        """The underlying result (AsyncResult, EagerResult...); None until triggered."""
        return self._result

    def __getattr__(self, name: str) -> Any:
        """Answer the rest of Celery's result API (``result``, ``ready()``...) from below.

        Raises:
            NotTriggeredCeleryError: the call has not triggered yet.
        """
        if name.startswith("__") or "_result" not in vars(self):
            raise AttributeError(name)
        return getattr(self._underlying(), name)

    def _underlying(self) -> Any:
        if self._result is None:
            msg = (
                f"call {self.invocation_id} has not been triggered yet: an on-commit call "
                "triggers when its transaction commits"
            )
            raise NotTriggeredCeleryError(msg)
        return self._result

    def set_result(self, result: Any) -> None:
        """Attach the underlying result once the call has triggered."""
        self._result = result

    def set_options(self, options: Mapping[str, Any]) -> None:
        """Replace the options the hooks see (trigger adds task_id, eta and the rest)."""
        self._options = options

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """Wait for and return the task's result, as ``AsyncResult.get`` does.

        Raises:
            NotTriggeredCeleryError: the call has not triggered yet (its transaction is open).
            celery.exceptions.TimeoutError: no result within the timeout; ``invocation_timeout``
                has been sent.
        """
        underlying = self._underlying()
        try:
            return underlying.get(*args, **kwargs)
        except TimeoutError as ex:
            self.timeout(ex)
            raise

    def timeout(self, ex: TimeoutError) -> None:
        """Report that waiting for this call's result timed out with ``ex``."""
        self._task._invocation_timed_out(self, ex)  # noqa: SLF001 - the task owns the event

    def then(self, *args: Any, **kwargs: Any) -> Any:
        """Chain a callback on the underlying result (``AsyncResult.then``)."""
        return self._result.then(*args, **kwargs)

    @property
    def state(self) -> str:
        """``'WAITING'`` before the call triggered, then the underlying result's state."""
        return "WAITING" if self._result is None else str(self._result.state)

    def successful(self) -> bool:
        """Return True when the call triggered and its task succeeded."""
        return self._result is not None and bool(self._result.successful())

    def failed(self) -> bool:
        """Return True when the call triggered and its task failed."""
        return self._result is not None and bool(self._result.failed())

    @property
    def id(self) -> str | None:
        """The task id, or None before the call triggered and for an ignored call."""
        return None if self._result is None else self._result.id

    @property
    def task_id(self) -> str | None:
        """The task id, as :attr:`id`."""
        return self.id

    def __repr__(self) -> str:
        """Show the invocation id and the task id, and the state where it is known here.

        That is before the call triggered (``WAITING``), or when its result is local (an ignored
        or a failed trigger, an eager run). Otherwise the state is the result backend's to tell,
        and a repr asks no backend: a project may have none (the shell would print a traceback).
        """
        asks_backend = isinstance(self._result, AsyncResult) and not isinstance(
            self._result, EagerResult
        )
        state = "" if asks_backend else f" state={self.state}"
        return f"<{type(self).__name__} {self.invocation_id}{state} id={self.id}>"
