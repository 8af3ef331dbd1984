"""The task id in a lock or an ignore window, read from Redis as data: never unpickled.

A lock's value is written with the cache's serializer (:attr:`RedisBinding.encode
<celery_events.locks.redis_cache.RedisBinding.encode>`), so that ``cache.get(unique_key)`` returns
the holder's task id, as it did with django-celery-extensions, whose processes write the same
values during a rolling upgrade. Django's ``RedisCache`` and django-redis pickle a string by
default, and unpickling runs whatever the pickle names: a value that anyone who can write to the
cache's Redis planted would run code in every process that read it.

:func:`read_text` therefore never deserializes. It finds the texts that the value can hold (a
serializer writes a string as its UTF-8 bytes between a short header and a short trailer), encodes
each with the cache's own serializer, and answers the one whose encoding is the value, byte for
byte (decompressed first, for a cache that compresses). Any other value (an object, a number,
a pickle that would call something, a truncated one) is unreadable: None.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["MAX_VALUE_BYTES", "read_text"]

#: The longest value read: a task id's encoding is a few dozen bytes; a longer value is not one.
MAX_VALUE_BYTES: Final = 4096

# Pickle opcodes of a string: protocol 2 and later open with PROTO and its number, protocols 4
# and 5 then with FRAME and its 8-byte length; SHORT_BINUNICODE (4+) has a 1-byte length,
# BINUNICODE (1+) a 4-byte one.
_PROTO: Final = 0x80
_FRAME: Final = 0x95
_SHORT_BINUNICODE: Final = 0x8C
_BINUNICODE: Final = ord("X")

# Any other serializer (msgpack, one of the project's own): how many bytes may come before and
# after the text as UTF-8. Pickle's are the longest: PROTO (2), FRAME (9) and BINUNICODE (5)
# before; ``\np0\n.`` (protocol 0) after. JSON and pickle's protocol 0 escape some characters:
# their texts are found by their own rules first.
_MAX_HEADER: Final = 16
_MAX_TRAILER: Final = 5


def read_text(
    value: bytes,
    serialize: Callable[[str], bytes],
    decompress: Callable[[bytes], bytes | None] | None = None,
) -> str | None:
    """Return the text that ``serialize`` writes as ``value``, or None for any other value.

    Args:
        value: a value read from Redis.
        serialize: the cache's serializer of a text (pickle, JSON...).
        decompress: the cache's decompressor, for a cache that compresses its values (the
            serializer's bytes are then compared with the value decompressed, as gzip's bytes
            hold the time they were made); it returns None for a value that is not compressed.
    """
    if len(value) > MAX_VALUE_BYTES:
        return None
    payloads = [value]
    if decompress is not None:
        plain = decompress(value)
        if plain is not None and len(plain) <= MAX_VALUE_BYTES:
            payloads.append(plain)
    for payload in payloads:
        for text in _candidates(payload):
            if serialize(text) == payload:
                return text
    return None


def _candidates(payload: bytes) -> Iterator[str]:
    """Yield the texts ``payload`` may be the encoding of: the pickled one first, then any."""
    for escaped in (_pickled(payload), _json_string(payload), _pickled_as_text(payload)):
        if escaped is not None:
            yield escaped
    size = len(payload)
    for start in range(min(_MAX_HEADER, size) + 1):
        for end in range(size, max(start, size - _MAX_TRAILER) - 1, -1):
            text = _utf8(payload[start:end])
            if text is not None:
                yield text


def _json_string(payload: bytes) -> str | None:
    """Return the string that JSON ``payload`` is, unchecked; None if it is not one.

    Only a payload in quotes is parsed: a string, which nests nothing.
    """
    if payload[:1] != b'"':
        return None
    try:
        text = json.loads(payload)
    except ValueError:
        return None
    return text if isinstance(text, str) else None


def _pickled_as_text(payload: bytes) -> str | None:
    """Return the text that a pickle of protocol 0 (``V...``) holds, unchecked; None if none."""
    if payload[:1] != b"V" or (end := payload.find(b"\n")) == -1:
        return None
    try:
        return payload[1:end].decode("raw_unicode_escape")
    except UnicodeDecodeError:
        return None


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _pickled(payload: bytes) -> str | None:
    """Return the text a pickle (protocol 1 to 5) of a string holds, unchecked; None if none."""
    at = 0
    if payload[:1] == bytes((_PROTO,)):
        at = 2
        if payload[at : at + 1] == bytes((_FRAME,)):
            at += 9
    opcode = payload[at : at + 1]
    if opcode == bytes((_SHORT_BINUNICODE,)):
        start, length = at + 2, int.from_bytes(payload[at + 1 : at + 2], "little")
    elif opcode == bytes((_BINUNICODE,)):
        start, length = at + 5, int.from_bytes(payload[at + 1 : at + 5], "little")
    else:
        return None
    return _utf8(payload[start : start + length])
