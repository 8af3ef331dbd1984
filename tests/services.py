"""The real services the tests run against: a Redis, a PostgreSQL, a key prefix of their own.

Settings and the worker subprocess both import this, so they agree on the Redis and the prefix:
the first process to import it picks them and exports them in the environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def throwaway_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a redis-server of the block's own on a free port; yield its URL and process.

    The server keeps no file (no snapshot, no append-only file), but it is given a temporary
    directory of its own to run in: at the end of the block the server is killed and the
    directory removed, so that nothing is left behind.

    Raises:
        RuntimeError: there is no redis-server binary, or the server did not start.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        msg = "no Redis at REDIS_URL and no redis-server binary to start one"
        raise RuntimeError(msg)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="celery-events-redis-") as directory:
        process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [
                binary,
                *("--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                if _reachable(url):
                    break
                time.sleep(0.05)
            else:
                msg = f"redis-server on port {port} did not start"
                raise RuntimeError(msg)
            yield url, process
        finally:
            process.kill()
            process.wait()


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Stop a process the tests started: SIGTERM, and SIGKILL if it has not exited in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_url() -> str:
    """Return the Redis the tests use: REDIS_URL, else a throwaway redis-server."""
    url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    if not _reachable(url):
        server = ExitStack()
        url, _ = server.enter_context(throwaway_redis())
        atexit.register(server.close)
    os.environ["REDIS_URL"] = url
    return url


def key_prefix() -> str:
    """Return this test session's key prefix, shared with its worker subprocesses."""
    return os.environ.setdefault(
        "CELERY_EVENTS_TEST_PREFIX", f"celery-events-test-{uuid.uuid4().hex[:8]}:"
    )
