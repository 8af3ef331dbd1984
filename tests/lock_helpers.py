"""Helpers of the lock tests: caches the lock store can be pointed at, and Redis's own counts."""

from __future__ import annotations

import json
import pickle
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from tests.services import throwaway_redis  # noqa: F401 - the lock tests import it from here

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

DJANGO_REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"
DJANGO_REDIS_PACKAGE_CACHE = "django_redis.cache.RedisCache"


def redis_cache(location: str, *, prefix: str = "", **options: Any) -> dict[str, Any]:
    """A CACHES entry of Django's RedisCache at ``location``, under this session's key prefix."""
    return {
        "BACKEND": DJANGO_REDIS_CACHE,
        "LOCATION": location,
        "KEY_PREFIX": f"{settings.KEY_PREFIX}{prefix}",
        "OPTIONS": options,
    }


def use_cache(django_settings: Any, alias: str, config: dict[str, Any]) -> None:
    """Add cache ``alias`` and name it in CACHE_NAME, through pytest-django's ``settings``."""
    django_settings.CACHES = {**django_settings.CACHES, alias: config}
    django_settings.DJANGO_CELERY_EXTENSIONS_CACHE_NAME = alias


@contextmanager
def own_queue(redis_client: redis.Redis) -> Iterator[str]:
    """Name a queue of the block's own, which nothing consumes; delete its keys afterwards."""
    name = f"locks-{uuid.uuid4().hex[:12]}"
    yield name
    keys = redis_client.keys(f"{settings.KEY_PREFIX}*{name}")
    if keys:
        redis_client.delete(*keys)


def published(redis_client: redis.Redis, queue: str) -> list[str]:
    """Return the task ids of the messages waiting in ``queue`` of the Redis broker."""
    messages = redis_client.lrange(f"{settings.KEY_PREFIX}{queue}", 0, -1)
    return [json.loads(message)["headers"]["id"] for message in messages]


class _Touch:
    """Unpickled, it creates the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (self.path,))


def planted_pickle(path: Path) -> bytes:
    """Return a pickle that creates the file ``path`` when unpickled: a value planted in Redis."""
    return pickle.dumps(_Touch(path))
