"""The index entries that the Redis lock store writes beside held keys, and reads back checked.

Keys are hashes of a call's arguments, so neither the task nor the call can be read from them.
When the caller names the task, the script that takes a lock or opens an ignore window also
writes an *index entry* beside it (see ``celery_events.locks.redis_store``): its task, its kind,
its key, the unique key an ignore window sits beside, the task id it holds, and what the
``INDEX_ARGUMENTS`` setting lets it keep of the call's arguments:

- ``"redacted"`` (the default): the call's *shape*, ``(int, str, label=str)``: the type of each
  argument and the keyword names, no value, at most :data:`SHAPE_LIMIT` characters;
- ``"all"``: the arguments themselves, as JSON, when JSON can encode them and the entry stays
  within :data:`ENTRY_ARGUMENTS_LIMIT` characters (else the shape): in plain text in Redis;
- ``"none"``: nothing of them.

An entry is *signed*: its text follows an HMAC of it (SHA-256, ``django.utils.crypto.salted_hmac``)
made with the project's ``SECRET_KEY``. Whoever can write to the cache's Redis can write a key
there, but not an entry that :func:`read_entry` accepts without the secret: an entry written by
anything else (another project, celery-events 0.1.0, a hand) is refused, so that the admin and
``manage.py celery_events`` never show, nor release, a cache key that the library did not take.
``SECRET_KEY_FALLBACKS`` are accepted too, so that a rotation of the secret keeps the index.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from django.conf import settings as django_settings
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes

from celery_events.config import settings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .base import CallArguments

__all__ = [
    "ENTRY_ARGUMENTS_LIMIT",
    "INDEX_PREFIX",
    "MAX_ENTRY_LENGTH",
    "SHAPE_LIMIT",
    "Entry",
    "KeyKind",
    "arguments_shape",
    "entry_key_prefix",
    "entry_value",
    "read_entry",
    "searched_text",
]

KeyKind: TypeAlias = Literal["unique", "ignore"]
"""What a key of a call is: its unique lock, or its ignore window."""

#: The cache-key prefix of the index entries.
INDEX_PREFIX: Final = "celery-events|held"

#: The longest index entry (in characters of JSON) that keeps the call's arguments.
ENTRY_ARGUMENTS_LIMIT: Final = 2048

#: The longest shape of a call's arguments, in characters.
SHAPE_LIMIT: Final = 200

#: The longest entry read: longer than any entry the store writes, signature included.
MAX_ENTRY_LENGTH: Final = 4 * ENTRY_ARGUMENTS_LIMIT

#: The salt of the entries' signatures: a signature made for anything else fails.
_SALT: Final = "celery_events.locks.index"

#: The length of a signature: SHA-256, in hexadecimal.
_SIGNATURE_LENGTH: Final = 64

_KINDS: Final = ("unique", "ignore")

#: Index entries are written on every trigger: compact JSON, by an encoder made once.
_encode: Final = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class Entry:
    """An index entry, as :func:`read_entry` accepted it."""

    task_name: str
    kind: KeyKind
    key: str
    """The cache key of the lock or the window."""
    beside: str | None
    """The unique key whose hash slot an ignore window shares, or None."""
    task_id: str
    """The task id the key held when the entry was written."""
    args: list[Any] | None
    """The call's positional arguments, when the entry keeps them (``INDEX_ARGUMENTS = "all"``)."""
    kwargs: dict[str, Any] | None
    """The call's keyword arguments, when the entry keeps them."""
    shape: str | None
    """The call's shape (:func:`arguments_shape`): kept, or made from the arguments; None when
    the entry keeps nothing of them."""


def entry_key_prefix(task_name: str) -> str:
    """Return the cache-key prefix of the index entries of task ``task_name``.

    Braces of the name become parentheses: Redis Cluster would hash a ``{...}`` of the name
    instead of the hash tag that puts an entry in its key's slot. Writing an entry and listing
    them both name it here, so that ``list --task`` finds the entries of ``reports.{daily}``.
    Names that differ only there share a prefix: a listing keeps only the entries that hold the
    name asked for.
    """
    return f"{INDEX_PREFIX}|{task_name.replace('{', '(').replace('}', ')')}|"


def arguments_shape(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> str:
    """Return the shape of a call: ``(int, str, label=str)``, the types without the values.

    Keyword names that are not identifiers are shown as ``?``; a shape longer than
    :data:`SHAPE_LIMIT` characters is cut, and ends with ``…)``.
    """
    parts = [_type_name(value) for value in args or ()]
    parts += [
        f"{name if name.isidentifier() else '?'}={_type_name(value)}"
        for name, value in (kwargs or {}).items()
    ]
    shape = f"({', '.join(parts)})"
    return shape if len(shape) <= SHAPE_LIMIT else shape[: SHAPE_LIMIT - 2] + "…)"


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def entry_value(
    task_name: str,
    kind: KeyKind,
    key: str,
    beside: str | None,
    task_id: str,
    arguments: CallArguments | None,
) -> str:
    """Return the signed text of an index entry, keeping what ``INDEX_ARGUMENTS`` allows.

    With ``"all"``, arguments that JSON cannot encode (the pickle serializer's objects) or that
    would make the entry longer than :data:`ENTRY_ARGUMENTS_LIMIT` are kept as their shape.

    Raises:
        django.core.exceptions.ImproperlyConfigured: ``SECRET_KEY`` is empty.
    """
    entry: dict[str, Any] = {
        "task": task_name,
        "kind": kind,
        "key": key,
        "beside": beside,
        "id": task_id,
    }
    text = None
    keep = settings.INDEX_ARGUMENTS
    if arguments is not None and keep != "none":
        args, kwargs = arguments
        if keep == "all":
            text = _with_arguments(entry, args, kwargs)
        if text is None:
            text = _encode({**entry, "shape": arguments_shape(args, kwargs)})
    if text is None:
        text = _encode(entry)
    return f"{_signature(text, django_settings.SECRET_KEY)}:{text}"


def _with_arguments(
    entry: dict[str, Any], args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
) -> str | None:
    """Return the JSON of ``entry`` with the arguments, or None when they are not JSON or long."""
    try:
        # None for none (as Celery hands them) is written as empty ones, as explain takes them.
        text = _encode({**entry, "args": args or (), "kwargs": kwargs or {}})
    # Not JSON; a circular structure is a ValueError, one nested too deep a RecursionError.
    except (TypeError, ValueError, RecursionError):
        return None
    return text if len(text) <= ENTRY_ARGUMENTS_LIMIT else None


def _signature(text: str, secret: str | bytes) -> str:
    # Django's salted_hmac, with its key derived once per secret: an entry is signed on every
    # trigger of a unique call.
    return hmac.new(_signing_key(secret), text.encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=8)
def _signing_key(secret: str | bytes) -> bytes:
    """Return the key that ``salted_hmac(_SALT, ..., secret=secret)`` signs with."""
    return hashlib.sha256(force_bytes(_SALT) + force_bytes(secret)).digest()


def read_entry(value: bytes) -> Entry:
    """Return the entry that ``value`` holds, once its signature and its fields are checked.

    Raises:
        ValueError: the entry is unsigned, signed with another secret, too long, not JSON, or a
            field is missing or of the wrong type; the message says which.
    """
    if len(value) > MAX_ENTRY_LENGTH:
        msg = f"{len(value)} bytes, longer than any entry celery-events writes"
        raise ValueError(msg)
    text = value.decode(errors="replace")
    signature, _, text = text.partition(":")
    secrets = [django_settings.SECRET_KEY, *django_settings.SECRET_KEY_FALLBACKS]
    if len(signature) != _SIGNATURE_LENGTH or not any(
        constant_time_compare(signature, _signature(text, secret)) for secret in secrets
    ):
        msg = (
            "not signed with this project's SECRET_KEY: written by something other than "
            "celery-events (or by its version 0.1.0, whose entries were unsigned)"
        )
        raise ValueError(msg)
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError) as exc:
        msg = f"not JSON: {exc}"
        raise ValueError(msg) from exc
    if not isinstance(fields, dict):
        msg = f"not a JSON object but {type(fields).__name__}"
        raise ValueError(msg)  # noqa: TRY004 - a bad entry is a ValueError, whatever is wrong
    return _entry(fields)


def _entry(fields: dict[str, Any]) -> Entry:
    """Return the entry of checked ``fields``; raise ValueError naming the first bad one."""
    task_name, kind, key, beside, task_id = (
        fields.get(name) for name in ("task", "kind", "key", "beside", "id")
    )
    args, kwargs, shape = fields.get("args"), fields.get("kwargs"), fields.get("shape")
    problems = {
        "task": _is_text(task_name),
        "kind": kind in _KINDS,
        "key": _is_text(key),
        "beside": beside is None or (_is_text(beside) and kind == "ignore"),
        "id": _is_text(task_id),
        "args": args is None if kwargs is None else isinstance(args, list),
        "kwargs": kwargs is None if args is None else isinstance(kwargs, dict),
        "shape": shape is None or isinstance(shape, str),
    }
    for name, good in problems.items():
        if not good:
            msg = f"its field {name!r} is missing or wrong: {fields.get(name)!r:.80}"
            raise ValueError(msg)
    if shape is None and args is not None:
        shape = arguments_shape(args, kwargs)
    return Entry(
        fields["task"], fields["kind"], fields["key"], beside, fields["id"], args, kwargs, shape
    )


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def searched_text(entry: Entry, *, arguments: bool) -> str:
    """Return what a search of the index looks in, case-folded: task, key, task id, shape...

    Args:
        entry: the entry.
        arguments: whether the search also looks in the call's arguments (the admin's users
            who may see them).
    """
    text = f"{entry.task_name}\n{entry.key}\n{entry.task_id}\n{entry.shape or ''}"
    if arguments and entry.args is not None:
        text += "\n" + _encode([entry.args, entry.kwargs])
    return text.casefold()
