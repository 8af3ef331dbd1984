"""The words the operator surfaces show a held key in: its kind, its call, its time left.

``manage.py celery_events`` prints them and the admin's pages show them, so both name a key,
a call and an expiry alike.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    # Module-qualified in the hint: the API docs describe HeldKey in listing and in operations,
    # and Sphinx refuses a bare name as ambiguous.
    from .locks import listing
    from .locks.listing import KeyKind

__all__ = ["KIND_NAMES", "arguments_text", "call_text", "time_left_text"]


#: What each kind of key is called, in the command's output and on the admin's pages.
KIND_NAMES: Final[dict[KeyKind, str]] = {"unique": "unique lock", "ignore": "ignore window"}


def call_text(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> str:
    """Return a call's arguments as ``(*[...], **{...})``, in JSON."""
    return f"(*{json.dumps(args)}, **{json.dumps(kwargs)})"


def arguments_text(key: listing.HeldKey, *, reveal: bool) -> str | None:
    """Return what may be shown of a held key's call arguments, or None when the index has none.

    Args:
        key: the held key.
        reveal: whether the arguments themselves may be shown (``call_text``); otherwise only
            their shape, ``(int, label=str)``, is.
    """
    if reveal and key.args is not None:
        return call_text(key.args, key.kwargs)
    return key.shape


def time_left_text(ttl: float | None) -> str:
    """Return a key's seconds left in words: ``59.9 s``, or ``no expiry`` for None."""
    return "no expiry" if ttl is None else f"{ttl:.1f} s"
