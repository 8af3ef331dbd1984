"""The outcome a unique call leaves beside its lock when it ends, for whoever joined it.

The attempt that ends a unique call writes its outcome (success and value, or failure and
exception) in the lock store in the same round trip that frees the lock
(:meth:`~celery_events.locks.LockStore.release`), where the stand-ins that joined the call read
it (:mod:`celery_events.stand_ins`): so a join works, and the body runs once, without a result
backend. An outcome is encoded with the task's serializer, as Celery encodes a message, an
exception as Celery's result backends prepare one; it is kept as long as Celery keeps results
(``result_expires``, a day by default).

An outcome whose encoding is longer than :data:`OUTCOME_LIMIT`, or that the serializer cannot
encode, is left as a mark that says so: whoever joined then reads it from the result backend.

The same envelope carries the stand-ins parked beside a running call (:func:`pack`,
:func:`unpack`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from kombu.exceptions import EncodeError
from kombu.serialization import dumps, loads, prepare_accept_content

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

    from .typing import CalledTask

__all__ = [
    "KEPT_IN_BACKEND",
    "OUTCOME_LIMIT",
    "CallOutcome",
    "decode",
    "encode",
    "from_result",
    "kept_for",
    "pack",
    "unpack",
]

OUTCOME_LIMIT: Final = 64 * 1024
"""The longest outcome kept in the lock store, in bytes of its encoding."""

KEPT_IN_BACKEND: Final = b""
"""The mark of an outcome too long to keep, or that the serializer could not encode."""

#: How long an outcome is kept when Celery keeps results for ever (``result_expires`` None).
_DEFAULT_KEPT: Final = timedelta(days=1).total_seconds()


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """How a call ended: its return value, or the exception it failed with."""

    succeeded: bool
    """Whether the call returned."""
    value: Any
    """The return value; the exception when the call failed."""

    def complete(self) -> Any:
        """Return the value, or raise the exception.

        Raises:
            Exception: the exception the call failed with.
        """
        if self.succeeded:
            return self.value
        raise self.value


def encode(task: CalledTask, outcome: CallOutcome) -> bytes:
    """Return the record of ``outcome``, or :data:`KEPT_IN_BACKEND` when it cannot be kept.

    Args:
        task: the task whose call ended: its serializer and result backend.
        outcome: how the call ended.
    """
    value = (
        outcome.value
        if outcome.succeeded
        else task.backend.prepare_exception(outcome.value, task.serializer)
    )
    try:
        record = pack(task, {"succeeded": outcome.succeeded, "value": value})
    except EncodeError:
        return KEPT_IN_BACKEND
    return record if len(record) <= OUTCOME_LIMIT else KEPT_IN_BACKEND


def decode(task: CalledTask, record: bytes) -> CallOutcome | None:
    """Return the outcome a record holds; None for :data:`KEPT_IN_BACKEND`.

    Args:
        task: the task that joined: its app's accepted content and result backend.
        record: the record :func:`encode` made.
    """
    if record == KEPT_IN_BACKEND:
        return None
    body = unpack(task.app, record)
    if body["succeeded"]:
        return CallOutcome(succeeded=True, value=body["value"])
    return CallOutcome(succeeded=False, value=task.backend.exception_to_python(body["value"]))


def from_result(result: AsyncResult[Any]) -> CallOutcome:
    """Return the outcome of a finished result of the result backend."""
    return CallOutcome(succeeded=result.successful(), value=result.result)


def kept_for(task: CalledTask) -> float:
    """Return how many seconds an outcome is kept: as long as Celery keeps results."""
    expires = task.app.conf.result_expires
    if isinstance(expires, timedelta):
        return expires.total_seconds()
    return float(expires) if expires else _DEFAULT_KEPT


def pack(task: CalledTask, body: Any) -> bytes:
    """Encode ``body`` with the task's serializer, with its content type and encoding.

    Raises:
        kombu.exceptions.EncodeError: the serializer cannot encode ``body``.
    """
    content_type, encoding, data = dumps(body, serializer=task.serializer)
    raw = data if isinstance(data, bytes) else data.encode(encoding)
    return b"\n".join((content_type.encode(), encoding.encode(), raw))


def unpack(app: Celery, packed: bytes) -> Any:
    """Decode what :func:`pack` encoded, if the app accepts its content type.

    Raises:
        kombu.exceptions.ContentDisallowed: the app does not accept its content type.
    """
    content_type, encoding, data = packed.split(b"\n", 2)
    return loads(
        data,
        content_type.decode(),
        encoding.decode(),
        accept=prepare_accept_content(app.conf.accept_content),
    )
