"""The index entries beside held keys: what they keep of a call, their signature, their checks."""

from __future__ import annotations

import json
import uuid

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

from celery_events.locks import get_lock_store
from celery_events.locks.index import (
    ENTRY_ARGUMENTS_LIMIT,
    SHAPE_LIMIT,
    _signature,
    arguments_shape,
    entry_value,
    read_entry,
)

TASK = "tests.tasks.ops_unique_ignored"
EMAIL = "ada@example.com"


def stored(key: str, redis_client) -> bytes:
    """Return the index entry of the unique lock ``key``, as Redis holds it."""
    store = get_lock_store()
    value = redis_client.get(store._entry_key(TASK, "unique", key, key))
    assert value is not None
    return bytes(value)


def signed(text: str) -> bytes:
    """Return ``text`` signed as the library signs an entry: one written by a bug of its own."""
    return f"{_signature(text, django_settings.SECRET_KEY)}:{text}".encode()


def admit(key: str, *args, **kwargs) -> None:
    get_lock_store().admit(
        task_id="holder",
        unique_key=key,
        lock_ttl=60,
        ignore_key=None,
        task_name=TASK,
        arguments=(args, kwargs),
    )


@pytest.mark.parametrize(
    ("setting", "kept"),
    [
        ("redacted", {"shape": "(int, recipient=str)"}),
        ("all", {"args": [1], "kwargs": {"recipient": EMAIL}}),
        ("none", {}),
    ],
)
def test_an_entry_keeps_what_index_arguments_says_of_the_arguments(
    settings, redis_client, setting, kept
):
    settings.DJANGO_CELERY_EXTENSIONS_INDEX_ARGUMENTS = setting
    key = str(uuid.uuid4())

    admit(key, 1, recipient=EMAIL)
    value = stored(key, redis_client)
    fields = json.loads(value.partition(b":")[2])

    assert {name: fields[name] for name in ("shape", "args", "kwargs") if name in fields} == kept
    assert (EMAIL.encode() in value) == (setting == "all")


def test_the_default_keeps_no_argument_in_redis(redis_client):
    key = str(uuid.uuid4())

    admit(key, EMAIL, note="x" * 10)

    assert EMAIL.encode() not in stored(key, redis_client)


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "argument",
    [object(), "x" * ENTRY_ARGUMENTS_LIMIT, nested(100_000)],
    ids=["not-json", "too-long", "deeper-than-json-encodes"],
)
def test_arguments_the_entry_cannot_keep_are_kept_as_their_shape(settings, argument):
    settings.DJANGO_CELERY_EXTENSIONS_INDEX_ARGUMENTS = "all"

    entry = read_entry(entry_value(TASK, "unique", "k", None, "t", ([argument], {})).encode())

    assert entry.args is None
    assert entry.shape == f"({type(argument).__name__})"


def test_a_shape_names_types_and_keywords_never_values():
    assert arguments_shape((1, "a", None, [2]), {"to": EMAIL, "not a name": 1}) == (
        "(int, str, None, list, to=str, ?=int)"
    )
    assert arguments_shape(None, None) == "()"
    long = arguments_shape(range(1000), {})
    assert len(long) == SHAPE_LIMIT
    assert long.endswith("…)")


OLD_SECRET, NEW_SECRET = "a-secret-rotated-out", "a-secret-rotated-in"


def test_an_entry_signed_with_a_fallback_secret_is_read():
    with override_settings(SECRET_KEY=OLD_SECRET):
        value = entry_value(TASK, "unique", "k", None, "t", None).encode()

    with override_settings(SECRET_KEY=NEW_SECRET, SECRET_KEY_FALLBACKS=[OLD_SECRET]):
        assert read_entry(value).task_id == "t"
    with override_settings(SECRET_KEY=NEW_SECRET), pytest.raises(ValueError, match="not signed"):
        read_entry(value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            json.dumps({"task": TASK, "kind": "unique", "key": "k", "id": "t"}).encode(),
            "not signed",
        ),
        (signed("{not json"), "not JSON"),
        (signed("[1, 2]"), "not a JSON object but list"),
        (signed('{"kind": "unique", "key": "k", "id": "t"}'), "field 'task'"),
        (signed(f'{{"task": "{TASK}", "kind": "lock", "key": "k", "id": "t"}}'), "field 'kind'"),
        (signed(f'{{"task": "{TASK}", "kind": "unique", "key": "", "id": "t"}}'), "field 'key'"),
        (
            signed(f'{{"task": "{TASK}", "kind": "unique", "key": "k", "beside": "b", "id": "t"}}'),
            "field 'beside'",
        ),
        (signed(f'{{"task": "{TASK}", "kind": "unique", "key": "k", "id": 7}}'), "field 'id'"),
        (
            signed(f'{{"task": "{TASK}", "kind": "unique", "key": "k", "id": "t", "args": []}}'),
            "field 'args'",
        ),
        # Python 3.13's decoder takes any depth an entry's length allows; older ones refuse it.
        (signed("[" * 4000 + "]" * 4000), "not JSON|not a JSON object but list"),
        (b"x" * (8 * ENTRY_ARGUMENTS_LIMIT + 1), "longer than any entry"),
    ],
    ids=[
        "unsigned",
        "not-json",
        "not-an-object",
        "no-task",
        "kind",
        "empty-key",
        "beside-of-a-lock",
        "id",
        "args-without-kwargs",
        "deep",
        "long",
    ],
)
def test_read_entry_refuses_an_entry_naming_the_problem(value, problem):
    with pytest.raises(ValueError, match=problem):
        read_entry(value)
