"""Lock values read as data: the task id each serializer writes, and nothing else, never unpickled.

The serializers and compressors are the real ones, Django's and django-redis's; through a cache,
the values are the ones that ``cache.add`` writes, as django-celery-extensions writes its locks.
"""

from __future__ import annotations

import pickle
import uuid
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisSerializer
from django_redis.serializers.json import JSONSerializer
from django_redis.serializers.pickle import PickleSerializer

from celery_events.locks import Lease, UnreadableLockError, get_lock_store
from celery_events.locks.values import MAX_VALUE_BYTES, read_text
from tests.lock_helpers import DJANGO_REDIS_PACKAGE_CACHE, planted_pickle, redis_cache, use_cache

TASK_ID = "c0ffee00-0000-4000-8000-000000000001"

TEXTS = [TASK_ID, "", "é-ü-中-😀", "x" * 300, "a\nb\\c\"d'", "123"]


class PrefixSerializer:
    """A project's own serializer, as Django's ``RedisCache`` takes one in its OPTIONS."""

    def dumps(self, obj: Any) -> bytes:
        return (b"text:" if isinstance(obj, str) else b"repr:") + str(obj).encode()

    def loads(self, data: bytes) -> Any:
        return data[5:].decode()


SERIALIZERS = {
    **{
        f"pickle-{n}": RedisSerializer(protocol=n).dumps for n in range(pickle.HIGHEST_PROTOCOL + 1)
    },
    "django-redis-json": JSONSerializer({}).dumps,
    "own": PrefixSerializer().dumps,
}


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
@pytest.mark.parametrize("serialize", SERIALIZERS.values(), ids=SERIALIZERS.keys())
def test_read_text_reads_the_text_each_serializer_writes(serialize, text):
    assert read_text(serialize(text), serialize) == text


@pytest.mark.parametrize(
    "value",
    [
        pickle.dumps(7),
        pickle.dumps([TASK_ID]),
        pickle.dumps(TASK_ID.encode()),
        pickle.dumps(TASK_ID)[:-1],
        pickle.dumps(TASK_ID) + b"tail",
        b"7",
        b"",
        b"\x80\x05\x95" + b"\xff" * 40,
        pickle.dumps("x" * MAX_VALUE_BYTES),
    ],
    ids=["int", "list", "bytes", "truncated", "trailing", "raw-int", "empty", "junk", "too-long"],
)
def test_read_text_refuses_every_other_value(value):
    assert read_text(value, RedisSerializer().dumps) is None


def test_read_text_never_unpickles_what_it_reads(tmp_path):
    ran = tmp_path / "ran"

    assert read_text(planted_pickle(ran), RedisSerializer().dumps) is None
    assert read_text(planted_pickle(ran), PickleSerializer({}).dumps) is None
    assert not ran.exists()


CACHES = {
    "django": {},
    "django-own-serializer": {"OPTIONS": {"serializer": f"{__name__}.PrefixSerializer"}},
    "django-redis": {"BACKEND": DJANGO_REDIS_PACKAGE_CACHE},
    "django-redis-pickle-0": {
        "BACKEND": DJANGO_REDIS_PACKAGE_CACHE,
        "OPTIONS": {"PICKLE_VERSION": 0},
    },
    "django-redis-json": {
        "BACKEND": DJANGO_REDIS_PACKAGE_CACHE,
        "OPTIONS": {"SERIALIZER": "django_redis.serializers.json.JSONSerializer"},
    },
    **{
        f"django-redis-{name}": {
            "BACKEND": DJANGO_REDIS_PACKAGE_CACHE,
            "OPTIONS": {"COMPRESSOR": f"django_redis.compressors.{name}.{cls}"},
        }
        for name, cls in [
            ("zlib", "ZlibCompressor"),
            ("gzip", "GzipCompressor"),
            ("lzma", "LzmaCompressor"),
        ]
    },
}


@pytest.fixture(name="cache", params=CACHES)
def fixture_cache(request, settings):
    """Point CACHE_NAME at a cache of each serializer and compressor in turn."""
    config = {
        **redis_cache(django_settings.REDIS_URL, prefix="cache:values"),
        **CACHES[request.param],
    }
    use_cache(settings, request.param, config)
    return caches[request.param]


@pytest.mark.parametrize("task_id", [TASK_ID, f"{TASK_ID}-{'x' * 200}"], ids=["uuid", "long"])
def test_the_store_and_the_cache_api_read_each_others_task_ids(cache, task_id):
    # As during a rolling upgrade: django-celery-extensions takes its locks with cache.add,
    # and reads the locks this library takes with cache.get.
    theirs, ours = f"values|{uuid.uuid4()}", f"values|{uuid.uuid4()}"
    cache.add(theirs, task_id, 60)
    store = get_lock_store()
    store.admit(task_id=task_id, unique_key=ours, lock_ttl=60, ignore_key=None)

    assert store.holder(theirs) == task_id
    assert cache.get(ours) == task_id


def test_the_store_refuses_a_value_that_is_not_a_task_id(cache):
    key = f"values|{uuid.uuid4()}"
    cache.add(key, ["not", "a", "task id"], 60)

    with pytest.raises(UnreadableLockError, match=rf"key {key!r} of cache '[\w-]+' holds"):
        get_lock_store().holder(key)


def test_a_call_or_an_attempt_that_finds_a_planted_pickle_fails_and_never_unpickles_it(
    redis_client, tmp_path
):
    ran = tmp_path / "ran"
    store, key = get_lock_store(), f"values|{uuid.uuid4()}"
    store.admit(task_id="holder", unique_key=key, lock_ttl=60, ignore_key=None)
    redis_client.set(store.binding.key(key), planted_pickle(ran), keepttl=True)

    with pytest.raises(UnreadableLockError, match=f"key {key!r} of cache 'default' holds"):
        store.admit(task_id="caller", unique_key=key, lock_ttl=60, ignore_key=None)
    lease = Lease(unique_key=key, task_id="attempt", token=uuid.uuid4().hex, ttl=60)
    with pytest.raises(UnreadableLockError):
        store.claim(task_id="attempt", unique_key=key, lease=lease)

    assert not ran.exists()
