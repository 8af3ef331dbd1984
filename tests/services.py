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
from dataclasses import dataclass
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


@dataclass
class RedisServer:
    """A redis-server of a test's own on a port of its own, which the test may kill and restart.

    It keeps no file (no snapshot, no append-only file): a restart starts it empty, as a Redis
    that lost its memory.
    """

    port: int
    directory: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again) on its port; return once it answers.

        Raises:
            RuntimeError: there is no redis-server binary, or the server did not start.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "no Redis at REDIS_URL and no redis-server binary to start one"
            raise RuntimeError(msg)
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [
                binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            if _reachable(self.url):
                return
            time.sleep(0.05)
        self.kill()
        msg = f"redis-server on port {self.port} did not start"
        raise RuntimeError(msg)

    def kill(self) -> None:
        """Kill the server (``kill -9``), and reap it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@contextmanager
def restartable_redis() -> Iterator[RedisServer]:
    """Run a redis-server of the block's own on a free port; the block may kill and restart it.

    The server runs in a temporary directory of its own: at the end of the block the server is
    killed and the directory removed, so that nothing is left behind.

    Raises:
        RuntimeError: there is no redis-server binary, or the server did not start.
    """
    with tempfile.TemporaryDirectory(prefix="celery-events-redis-") as directory:
        server = RedisServer(_free_port(), directory)
        try:
            server.start()
            yield server
        finally:
            server.kill()


@contextmanager
def throwaway_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a redis-server of the block's own on a free port; yield its URL and process.

    Raises:
        RuntimeError: there is no redis-server binary, or the server did not start.
    """
    with restartable_redis() as server:
        assert server.process is not None
        yield server.url, server.process


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
