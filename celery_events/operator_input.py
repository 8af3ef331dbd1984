"""What an operator names a call by: its task, looked up, and its arguments, parsed from JSON.

The admin's Explain form and ``manage.py celery_events`` take a task's name and a call's
arguments as text; this module turns them into a :class:`~celery_events.task.DjangoTask` and a
list and a dict, or refuses them with an :class:`OperationError` whose message repeats the input
(cut to a readable length, :func:`shown`). :mod:`celery_events.operations` computes the call's
keys from what it returns.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

from celery import current_app

from .task import DjangoTask

__all__ = [
    "MAX_DEPTH",
    "OperationError",
    "get_task",
    "keyed_task_names",
    "parse_call",
    "shown",
]


#: The name of the app Celery makes current when a process has created none.
_CELERY_FALLBACK_APP: Final = "default"

#: How deeply the JSON of a call's arguments may nest (lists and objects): deeper JSON is refused,
#: as the keys computed from it could not be.
MAX_DEPTH: Final = 100

#: The longest part of an input that a message repeats.
_SHOWN_LENGTH: Final = 60


class OperationError(Exception):
    """An operation cannot be done as asked; the message names the offending input."""


def get_task(name: str) -> DjangoTask:
    """Return the registered task ``name`` of the current Celery app.

    Raises:
        OperationError: no such task, or it is not a DjangoTask.
    """
    app = current_app
    app.loader.import_default_modules()
    task = app.tasks.get(name)
    hint = ""
    if app.main == _CELERY_FALLBACK_APP:
        # The project never imported its own app (in its package's __init__.py, as the
        # installation guide says): Celery's fallback knows no task, or plain copies of them.
        hint = (
            f"; {app.main!r} is Celery's fallback app, current because the project's Celery app "
            "was never imported: import it in the project package's __init__.py "
            "(from .celery import app as celery_app)"
        )
    if task is None:
        msg = f"unknown task {name!r}: it is not registered with Celery app {app.main!r}{hint}"
        raise OperationError(msg)
    if not isinstance(task, DjangoTask):
        msg = (
            f"task {name!r} of Celery app {app.main!r} is not a DjangoTask: it has no unique lock "
            f"nor ignore window{hint}"
        )
        raise OperationError(msg)
    if not task.unique and task.ignore_task_timedelta is None:
        msg = (
            f"task {name!r} is neither unique nor ignore-configured "
            "(no unique=True, no ignore_task_timedelta): it has no keys to explain or release"
        )
        raise OperationError(msg)
    return task


def keyed_task_names() -> list[str]:
    """Return the names of the current Celery app's tasks that have keys: unique or ignoring."""
    app = current_app
    app.loader.import_default_modules()
    return sorted(
        name
        for name, task in app.tasks.items()
        if isinstance(task, DjangoTask) and (task.unique or task.ignore_task_timedelta is not None)
    )


_Parsed = TypeVar("_Parsed", list[Any], dict[str, Any])


def parse_call(
    args: str | None, kwargs: str | None, *, names: tuple[str, str] = ("--args", "--kwargs")
) -> tuple[list[Any], dict[str, Any]]:
    """Return a call's arguments from their JSON: a list and an object.

    Args:
        args: the JSON of the positional arguments; empty or None for none.
        kwargs: the JSON of the keyword arguments; empty or None for none.
        names: what the two are called where they were given, for the error message.

    Raises:
        OperationError: either is not JSON, or not of its type.
    """
    return (
        _parse_json(names[0], args, list, "a JSON list"),
        _parse_json(names[1], kwargs, dict, "a JSON object"),
    )


def _parse_json(option: str, text: str | None, kind: type[_Parsed], described: str) -> _Parsed:
    """Return ``option``'s JSON ``text`` as a ``kind`` (empty when not given)."""
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{option} {shown(text)} is not JSON: {exc}"
        raise OperationError(msg) from exc
    except ValueError as exc:  # an integer of more digits than Python converts
        msg = f"{option} {shown(text)} has an integer longer than Python's limit of digits"
        raise OperationError(msg) from exc
    except RecursionError as exc:
        msg = f"{option} {shown(text)} is nested deeper than {MAX_DEPTH} levels"
        raise OperationError(msg) from exc
    if not isinstance(value, kind):
        msg = f"{option} {shown(text)} is not {described}"
        raise OperationError(msg)
    if _deeper_than(value, MAX_DEPTH):
        msg = f"{option} {shown(text)} is nested deeper than {MAX_DEPTH} levels"
        raise OperationError(msg)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Return whether the lists and objects of JSON ``value`` nest more than ``limit`` deep."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending += [(child, depth + 1) for child in children]
    return False


def shown(text: str) -> str:
    """Return an operator's ``text`` for a message: its ``repr``, cut after ``_SHOWN_LENGTH``.

    What was typed or pasted (a call's JSON, a list page's cursor) is repeated in the message
    that refuses it, but never at full length: a pasted megabyte would bury the reason.
    """
    if len(text) > _SHOWN_LENGTH:
        return f"{text[:_SHOWN_LENGTH]!r}… ({len(text)} characters)"
    return repr(text)
