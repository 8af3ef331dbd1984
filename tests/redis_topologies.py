"""Redis topologies the tests start and stop themselves: a three-primary cluster, and Sentinel.

Each runs redis-server processes on free local ports, in a temporary directory of its own, and
kills them and removes the directory at the end. :func:`redis_cluster` and :func:`redis_sentinel`
are session fixtures (a test module loads them with ``pytest_plugins``); a test that kills a
server starts a topology of its own with :func:`sentinel_topology`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.conf import settings

from tests.conftest import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

CLUSTER_BACKEND = "celery_events.cache.RedisClusterCache"
SENTINEL_BACKEND = "celery_events.cache.RedisSentinelCache"
SERVICE_NAME = "mymaster"
#: Redis Cluster listens on port + 10000 for its bus; a port above this has no bus port.
HIGHEST_CLUSTER_PORT = 65535 - 10000
#: Bounds every command of the topologies' caches: no test can hang on a server that went away.
TIMEOUTS = {"socket_timeout": 2, "socket_connect_timeout": 2}


@dataclass(frozen=True, slots=True)
class Server:
    """A redis-server process of a topology."""

    port: int
    process: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        """Return a client of this server alone (no retries: a test sees what it answers)."""
        return redis.Redis(port=self.port, retry=None, **TIMEOUTS)

    def kill(self) -> None:
        """Kill the process and reap it."""
        self.process.kill()
        self.process.wait()


@dataclass(frozen=True, slots=True)
class SentinelTopology:
    """A primary, its replica, and a sentinel that monitors them as :data:`SERVICE_NAME`."""

    primary: Server
    replica: Server
    sentinel: Server

    def cache(self, **options: Any) -> dict[str, Any]:
        """A CACHES entry of :data:`SENTINEL_BACKEND`, under this session's key prefix."""
        return {
            "BACKEND": SENTINEL_BACKEND,
            "LOCATION": f"redis://127.0.0.1:{self.sentinel.port}",
            "KEY_PREFIX": settings.KEY_PREFIX,
            "OPTIONS": {"service_name": SERVICE_NAME, **TIMEOUTS, **options},
        }

    def primary_port(self) -> int:
        """Return the port of the server the sentinel names as the primary now."""
        with redis.Redis(port=self.sentinel.port, retry=None, **TIMEOUTS) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SERVICE_NAME)
        return int(port)


def cluster_cache(nodes: list[Server]) -> dict[str, Any]:
    """A CACHES entry of :data:`CLUSTER_BACKEND` on ``nodes``."""
    return {
        "BACKEND": CLUSTER_BACKEND,
        "LOCATION": [f"redis://127.0.0.1:{node.port}" for node in nodes],
        "KEY_PREFIX": settings.KEY_PREFIX,
        "OPTIONS": dict(TIMEOUTS),
    }


def _free_port(*, cluster: bool) -> int | None:
    """Return a port free now, or None when a cluster node could not use it (bus port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    if not cluster:
        return port
    if port > HIGHEST_CLUSTER_PORT:
        return None
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            return None
    return port


def _pings(server: Server) -> bool:
    try:
        with server.client() as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


def start_server(directory: Path, *arguments: str, cluster: bool = False) -> Server:
    """Start a redis-server with ``arguments`` on a free port; return it once it answers.

    Args:
        directory: where the server keeps its files.
        arguments: more arguments (a config file goes first, as ``redis-server`` takes it).
        cluster: run a cluster node, whose bus port (port + 10000) must be free too.

    Raises:
        RuntimeError: no server started in 5 attempts.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on the PATH: the Redis topologies cannot be started")
    for _ in range(5):
        port = _free_port(cluster=cluster)
        if port is None:
            continue
        command = [binary, *arguments, "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--dir", str(directory), "--save", "", "--appendonly", "no"]
        if cluster:
            command += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
            # A node that stops answering is failed after 2 s instead of 15 s.
            command += ["--cluster-node-timeout", "2000"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603 - ours
        server = Server(port, process)
        # Another process can take the port between the check and the bind: the server then
        # exits at once, and another port is tried.
        try:
            wait_for(
                lambda: process.poll() is not None or _pings(server),  # noqa: B023 - called at once
                f"redis-server on port {port} to start",
            )
        except BaseException:
            server.kill()  # not on any stack yet: nothing else would
            raise
        if process.poll() is None:
            return server
    msg = f"no redis-server started in 5 attempts (arguments {arguments!r})"
    raise RuntimeError(msg)


@contextmanager
def _servers() -> Iterator[tuple[Path, ExitStack]]:
    """A temporary directory, and a stack that kills every server put on it, then removes it."""
    directory = Path(tempfile.mkdtemp(prefix="celery-events-topology-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        yield directory, stack


def _started(stack: ExitStack, server: Server) -> Server:
    stack.callback(server.kill)
    return server


@contextmanager
def cluster_topology() -> Iterator[list[Server]]:
    """Run a cluster of three primaries (no replicas) over every hash slot; yield them."""
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not on the PATH: the Redis Cluster cannot be created")
    with _servers() as (directory, stack):
        nodes = [_started(stack, start_server(directory, cluster=True)) for _ in range(3)]
        subprocess.run(  # noqa: S603 - our own binary and arguments
            [
                *("redis-cli", "--cluster", "create"),
                *(f"127.0.0.1:{node.port}" for node in nodes),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for node in nodes:
            with node.client() as client:
                wait_for(
                    lambda: client.cluster("INFO")["cluster_state"] == "ok",
                    f"cluster node {node.port} to serve every slot",
                )
        yield nodes


@contextmanager
def sentinel_topology() -> Iterator[SentinelTopology]:
    """Run a primary, its replica and one sentinel (quorum 1) that fails over within seconds."""
    with _servers() as (directory, stack):
        primary = _started(stack, start_server(directory))
        replica = _started(
            stack, start_server(directory, "--replicaof", "127.0.0.1", str(primary.port))
        )
        config = directory / "sentinel.conf"
        config.write_text(
            f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {primary.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE_NAME} 500\n"
            f"sentinel failover-timeout {SERVICE_NAME} 2000\n"
        )
        sentinel = _started(stack, start_server(directory, str(config), "--sentinel"))
        topology = SentinelTopology(primary, replica, sentinel)
        with replica.client() as client:
            wait_for(
                lambda: client.info("replication")["master_link_status"] == "up",
                "the replica to follow the primary",
            )
        with redis.Redis(port=sentinel.port, retry=None, **TIMEOUTS) as client:
            wait_for(
                lambda: client.sentinel_slaves(SERVICE_NAME),
                "the sentinel to find the replica",
            )
        yield topology


@pytest.fixture(name="redis_cluster", scope="session")
def fixture_redis_cluster() -> Iterator[list[Server]]:
    """A three-primary cluster shared by the session's tests (none of them kills its nodes)."""
    with cluster_topology() as nodes:
        yield nodes


@pytest.fixture(name="redis_sentinel", scope="session")
def fixture_redis_sentinel() -> Iterator[SentinelTopology]:
    """A Sentinel set-up shared by the session's tests (none of them kills its servers)."""
    with sentinel_topology() as topology:
        yield topology


#: The topologies a lock test can run on, by the cache alias it gives each.
TOPOLOGIES = ("redis-cluster", "redis-sentinel")


def topology_cache(request: pytest.FixtureRequest, alias: str) -> dict[str, Any]:
    """Return the CACHES entry of topology ``alias``, starting its session fixture if need be."""
    if alias == "redis-cluster":
        return cluster_cache(request.getfixturevalue("redis_cluster"))
    topology: SentinelTopology = request.getfixturevalue("redis_sentinel")
    return topology.cache()
