"""Django cache backends on a Redis Cluster and on a Sentinel-managed primary.

Neither Django's ``RedisCache`` nor django-redis talks to a cluster or asks Sentinel where the
primary is. These backends are Django's ``RedisCache`` with another client behind it, so that
everything else stays as Django computes it: keys (``KEY_PREFIX``, ``VERSION``,
``KEY_FUNCTION``), the serializer, the cache API. The lock store and the beat lock use them as
they use ``RedisCache`` (``celery_events.locks.redis_cache.redis_binding``): name one in the
``CACHE_NAME`` setting.

- :class:`RedisClusterCache`: ``LOCATION`` is one or more nodes of the cluster
  (``redis://host:port``); redis-py's ``RedisCluster`` discovers the others and routes each
  command to the node of its key's hash slot. ``OPTIONS`` go to ``RedisCluster``.
- :class:`RedisSentinelCache`: ``LOCATION`` is one or more sentinels (``redis://host:port``);
  ``OPTIONS`` name the monitored primary (``service_name``), the options of the connections to
  the sentinels (``sentinel_kwargs``) and those of the connections to the primary (the rest).
  Reads go to the primary too: a lock read on a replica could be older than the one written.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.core.exceptions import ImproperlyConfigured
from redis.cluster import REDIS_ALLOWED_KEYS, ClusterNode, RedisCluster
from redis.exceptions import ConnectionError, RedisClusterException, TimeoutError  # noqa: A004
from redis.sentinel import Sentinel

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from redis import Redis

__all__ = [
    "RedisClusterCache",
    "RedisClusterCacheClient",
    "RedisSentinelCache",
    "RedisSentinelCacheClient",
]

#: What ``RedisCluster`` takes: its own parameters and the options of its connections. It drops
#: any other option without a word, so the backend refuses them instead.
_CLUSTER_OPTIONS: Final = frozenset(inspect.signature(RedisCluster).parameters) | frozenset(
    REDIS_ALLOWED_KEYS
)


def _refuse(backend: str, options: dict[str, Any], *names: str) -> None:
    """Refuse options of Django's client that ``backend``'s client has no use for."""
    for name in names:
        if options.get(name) is not None:
            msg = (
                f"{backend} takes no {name} option (got {options[name]!r}): its redis-py client "
                "makes its own connection pools and connections"
            )
            raise ImproperlyConfigured(msg)


def _host_and_port(url: str, default_port: int) -> tuple[str, int]:
    """Return the host and port of a ``redis://host:port`` ``LOCATION`` entry."""
    parts = urlsplit(url if "://" in url else f"redis://{url}")
    if parts.hostname is None:
        msg = f"LOCATION entry {url!r} names no host (expected redis://host:port)"
        raise ImproperlyConfigured(msg)
    return parts.hostname, parts.port or default_port


class RedisClusterCacheClient(RedisCacheClient):
    """Django's Redis cache client, talking to a cluster through redis-py's ``RedisCluster``.

    Every command goes to the primary of its key's slot (reads too, unless ``OPTIONS`` ask for
    ``read_from_replicas``). ``get_many``, ``set_many`` and ``delete_many`` are split by slot, as
    a cluster refuses one multi-key command over several slots.

    Made at the cache's first use, the client asks a node for the map of slots; when no node of
    ``LOCATION`` answers, it raises redis-py's ``ConnectionError``, which the lock store turns into
    :class:`~celery_events.locks.LockStoreUnavailableError`.

    Args:
        servers: the ``LOCATION`` nodes; the first URL's credentials and TLS apply to all.
        options: ``OPTIONS``: ``serializer`` as for Django's client, the rest for
            ``RedisCluster`` (``socket_timeout``, ``password``, ``read_from_replicas``...).

    Raises:
        django.core.exceptions.ImproperlyConfigured: an option ``RedisCluster`` does not take,
            or Django's ``pool_class`` or ``parser_class``.
    """

    def __init__(self, servers: list[str], serializer: Any = None, **options: Any) -> None:
        _refuse("RedisClusterCache", options, "pool_class", "parser_class")
        super().__init__(servers, serializer=serializer)
        unknown = sorted(set(options) - _CLUSTER_OPTIONS)
        if unknown:
            msg = f"RedisClusterCache: RedisCluster takes no option {', '.join(map(repr, unknown))}"
            raise ImproperlyConfigured(msg)
        others = [
            ClusterNode(*_host_and_port(url, 6379))  # type: ignore[no-untyped-call]
            for url in servers[1:]
        ]
        try:
            self._cluster = RedisCluster.from_url(servers[0], startup_nodes=others, **options)
        except RedisClusterException as exc:
            # RedisCluster asks a node for the slots as it is made, and reports that no node
            # answered as a generic cluster error: it is a connection error like any other.
            if isinstance(exc.__cause__, ConnectionError | TimeoutError):
                raise ConnectionError(str(exc)) from exc
            raise

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        """Return the cluster client: it routes each command by its key."""
        return self._cluster

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """Read ``keys`` with one ``MGET`` per slot."""
        keys = list(keys)
        values = self._cluster.mget_nonatomic(keys)
        return {
            key: self._serialized.loads(value)
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }

    def set_many(self, data: Mapping[Any, Any], timeout: Any) -> None:
        """Write ``data`` with one ``SET`` each, in one pipeline (a cluster's is split by node).

        Args:
            data: the cache keys (made) and their values.
            timeout: seconds each key lives, None for ever; 0 deletes the keys instead, as
                ``RedisCache`` does with a timeout that is not positive.
        """
        if timeout == 0:
            self._cluster.delete(*data)
            return
        pipeline = self._cluster.pipeline()  # type: ignore[no-untyped-call]
        for key, value in data.items():
            pipeline.set(key, self._serialized.dumps(value), ex=timeout)
        pipeline.execute()

    @property
    def _serialized(self) -> Any:
        """Django's serializer of the cache's values (the stubs do not name the attribute)."""
        return self._serializer  # type: ignore[attr-defined]


class RedisClusterCache(RedisCache):
    """Django's ``RedisCache`` on a Redis Cluster: ``LOCATION`` is one or more of its nodes.

    ``clear()`` empties every primary of the cluster, as ``FLUSHDB`` does on one Redis.
    """

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisClusterCacheClient


class RedisSentinelCacheClient(RedisCacheClient):
    """Django's Redis cache client, talking to the primary that Sentinel names.

    The client asks the sentinels where the primary is when it opens a connection, and again
    after a connection fails, so a failover moves it to the new primary. Reads and writes both
    go to the primary: the locks read what they wrote, never a replica's older copy.

    Args:
        servers: the ``LOCATION`` sentinels, ``redis://host:port`` each.
        options: ``OPTIONS``: ``service_name`` (required), the name the sentinels monitor the
            primary under; ``sentinel_kwargs``, options of the connections to the sentinels
            (``password``, ``socket_timeout``...; by default the ``socket_*`` options of the
            rest); ``serializer`` as for Django's client; the rest, options of the connections
            to the primary (``password``, ``db``, ``socket_timeout``...).

    Raises:
        django.core.exceptions.ImproperlyConfigured: ``service_name`` is missing, or Django's
            ``pool_class`` or ``parser_class`` is given.
    """

    def __init__(
        self,
        servers: list[str],
        service_name: str | None = None,
        sentinel_kwargs: dict[str, Any] | None = None,
        serializer: Any = None,
        **options: Any,
    ) -> None:
        if not service_name:
            msg = (
                "RedisSentinelCache needs OPTIONS['service_name'], the name the sentinels "
                f"monitor the primary under (got {service_name!r})"
            )
            raise ImproperlyConfigured(msg)
        _refuse("RedisSentinelCache", options, "pool_class", "parser_class")
        super().__init__(servers, serializer=serializer)
        sentinels = [_host_and_port(url, 26379) for url in servers]
        # redis-py types Sentinel from 8.2 on; the lock keeps 8.1 for Python 3.10.
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            sentinels, sentinel_kwargs=sentinel_kwargs, **options
        )
        self._primary: Redis = sentinel.master_for(service_name)  # type: ignore[no-untyped-call, unused-ignore]

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        """Return the client of the primary, for reads as for writes."""
        return self._primary


class RedisSentinelCache(RedisCache):
    """Django's ``RedisCache`` on the primary a set of sentinels monitors.

    ``LOCATION`` is one or more sentinels; ``OPTIONS['service_name']`` names the primary.
    """

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisSentinelCacheClient
