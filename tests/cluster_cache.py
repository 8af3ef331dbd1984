"""A Django cache on a Redis Cluster: the recipe docs/locks.md gives, used by the tests as is."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.cluster import RedisCluster


class RedisClusterCacheClient(RedisCacheClient):
    """Django's Redis cache client, talking to a cluster through redis-py's RedisCluster."""

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._cluster = RedisCluster.from_url(servers[0])

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        return self._cluster


class RedisClusterCache(RedisCache):
    """Django's RedisCache on a Redis Cluster: LOCATION is the URL of any of its nodes."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisClusterCacheClient
