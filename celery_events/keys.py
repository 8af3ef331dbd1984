"""The cache keys of a call: its unique lock's and its ignore window's.

A task maps a call to a key with its ``unique_key_generator`` (by default
:func:`default_unique_key_generator`), under the unique or the ignore prefix of the settings;
:func:`call_key` makes sure the generator gave a key.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from kombu import serialization

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from celery import Task

__all__ = ["call_key", "default_unique_key_generator"]


def default_unique_key_generator(
    task: Task[Any, Any],
    prefix: str,
    task_args: Sequence[Any] | None,
    task_kwargs: Mapping[str, Any] | None,
) -> str:
    """Return a key for ``prefix``, the task's name and its serialized arguments.

    The key is the one django-celery-extensions computes, so old and new processes agree on
    lock keys during a rolling upgrade; the keyword arguments are sorted by name first, so their
    order never changes the key.

    Args:
        task: the task that is called.
        prefix: the key prefix (the unique or the ignore prefix of the settings).
        task_args: the call's positional arguments.
        task_kwargs: the call's keyword arguments.
    """
    kwargs = dict(sorted(task_kwargs.items())) if task_kwargs else {}
    # The app's serializer, as django-celery-extensions used it (not a task's own); a DjangoTask
    # has it bound when Celery binds the task, which spares a settings lookup per call.
    serializer = getattr(task, "_key_serializer", None) or task.app.conf.task_serializer
    _, _, data = serialization.dumps((list(task_args or ()), kwargs), serializer)
    if isinstance(data, bytes):  # a binary serializer such as pickle
        data = data.hex()
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{prefix}:{task.name}:{data}"))


def call_key(
    generator: Callable[[str, Any, Any], object],
    task_name: str,
    prefix: str,
    task_args: Any,
    task_kwargs: Any,
) -> str:
    """Return the key that ``generator``, bound to its task, gives a call under ``prefix``.

    Args:
        generator: the task's ``unique_key_generator``, as a bound method.
        task_name: the task's name, for the error.
        prefix: the unique or the ignore prefix of the settings.
        task_args: the call's positional arguments.
        task_kwargs: the call's keyword arguments.

    Raises:
        TypeError: the generator returned something other than a non-empty string.
    """
    key = generator(prefix, task_args, task_kwargs)
    if not isinstance(key, str) or not key:
        shown = getattr(generator, "__qualname__", generator)
        msg = (
            f"unique_key_generator {shown} of task {task_name!r} returned {key!r}; "
            "it must return a non-empty string, the call's key"
        )
        raise TypeError(msg)
    return key
