"""Helpers of the lock tests: caches the lock store can be pointed at, and Redis's own counts."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings

from tests.conftest import wait_for
from tests.services import start_redis_server

if TYPE_CHECKING:
    from collections.abc import Iterator

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


@contextmanager
def throwaway_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a redis-server of the test's own, to count its commands or to stop it."""
    url, process = start_redis_server()
    try:
        yield url, process
    finally:
        process.kill()
        process.wait()


@contextmanager
def cluster_node(directory: str) -> Iterator[int]:
    """Run a redis-server in cluster mode, alone serving every hash slot; yield its port.

    One node is enough to show what a cluster refuses: a script whose keys are in two slots.
    """
    process, client = _start_cluster_node(directory)
    try:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_for(
            lambda: client.cluster("INFO")["cluster_state"] == "ok",
            "the cluster node to serve every slot",
        )
        yield client.get_connection_kwargs()["port"]
    finally:
        client.close()
        process.kill()
        process.wait()


def _start_cluster_node(directory: str) -> tuple[subprocess.Popen[bytes], redis.Redis]:
    # A free port can be taken by a client's connection before the server binds it: then the
    # server exits at once and another port is tried.
    for _ in range(3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [
                *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory),
                *("--save", "", "--appendonly", "no", "--cluster-enabled", "yes"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port, retry=None)
        wait_for(
            lambda: process.poll() is not None or _pings(client),  # noqa: B023 - called at once
            f"the cluster node on port {port} to start",
        )
        if process.poll() is None:
            return process, client
        client.close()
    msg = "no cluster node started in 3 attempts"
    raise RuntimeError(msg)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
