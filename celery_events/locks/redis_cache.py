"""What the Redis lock store and the beat lock take from a Django cache that lives in Redis.

A cache qualifies when it is Django's built-in ``django.core.cache.backends.redis.RedisCache`` or
django-redis's ``django_redis.cache.RedisCache`` (subclasses included, among them
:class:`~celery_events.cache.RedisClusterCache` and
:class:`~celery_events.cache.RedisSentinelCache`; not django-redis's ``ShardClient``, which
spreads keys over servers by its own hashing). The binding uses what the
cache is configured with: its client (connection pool, socket timeouts, retry policy), its key
function (``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``) and its serializer, so that the values
written by the lock store are the ones ``cache.get()`` reads, as with django-celery-extensions.
The lock store reads them back without deserializing them (:meth:`RedisBinding.text`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,  # noqa: A004
    ReadOnlyError,
    SlotNotCoveredError,
    TimeoutError,  # noqa: A004
)

from .base import LockStoreUnavailableError
from .values import read_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from django.core.cache.backends.base import BaseCache
    from redis import Redis
    from redis.cluster import RedisCluster

__all__ = ["RedisBinding", "RedisClient", "redis_binding"]

RedisClient: TypeAlias = "Redis | RedisCluster"
"""A client of one Redis (the caches' own) or of a Redis Cluster."""

#: What "Redis is unreachable" means: refused, reset or timed out connections (including
#: authentication and loading errors, and Sentinel naming no primary), writes refused by a
#: replica after a failover, and a cluster that serves no slot or not the key's.
UNREACHABLE: Final = (
    ConnectionError,
    TimeoutError,
    ReadOnlyError,
    ClusterDownError,
    SlotNotCoveredError,
)


@dataclass(frozen=True, slots=True)
class RedisBinding:
    """A Redis-backed Django cache, as the lock store and the beat lock use it."""

    cache_name: str
    """The alias of the cache in ``CACHES``, for error messages."""
    client: RedisClient
    """The cache's client, for writes (the first server of a replicated cache)."""
    make_key: Callable[[str], str]
    """The cache's ``make_key``: prefix, version and key function."""
    encode: Callable[[str], bytes]
    """The cache's serializer, for values written outside the cache API."""
    serialize: Callable[[str], bytes] | None = None
    """The cache's serializer alone, for a cache whose :attr:`encode` also compresses; None
    when :attr:`encode` is the serializer."""
    decompress: Callable[[bytes], bytes | None] | None = None
    """The cache's decompressor (django-redis's ``COMPRESSOR``): None for a value it did not
    compress; None itself for a cache that does not compress."""

    def text(self, value: bytes) -> str | None:
        """Return the text (a task id) that the cache's serializer wrote as ``value``, or None.

        Never deserializes: see ``celery_events.locks.values``. None for a value that is
        not the cache's encoding of a text (an object, a number, a pickle that calls something).
        """
        return read_text(value, self.serialize or self.encode, self.decompress)

    def key(self, key: str, *, beside: str | None = None) -> str:
        """Return the Redis key of the cache key ``key``.

        Args:
            key: a key as the cache API takes it.
            beside: another cache key; the returned key then carries a Redis Cluster hash tag
                that puts it in the same hash slot as ``beside``'s Redis key, so that one script
                can touch both on a cluster.
        """
        if beside is None:
            return self.make_key(key)
        return self.make_key(f"{key}{{{_hash_tag(self.make_key(beside))}}}")

    @contextmanager
    def guard(self, operation: str) -> Iterator[None]:
        """Turn a Redis that cannot be reached into :class:`LockStoreUnavailableError`.

        Args:
            operation: what was being done, for the message ("take unique lock ...").

        Raises:
            LockStoreUnavailableError: the body raised one of :data:`UNREACHABLE`.
        """
        try:
            yield
        except UNREACHABLE as exc:
            msg = f"cache {self.cache_name!r} could not {operation}: Redis is unreachable: {exc}"
            raise LockStoreUnavailableError(msg) from exc


def _hash_tag(redis_key: str) -> str:
    """Return what Redis Cluster hashes of ``redis_key``: its first non-empty ``{...}``, or all."""
    start = redis_key.find("{")
    if start != -1:
        end = redis_key.find("}", start + 1)
        if end > start + 1:
            return redis_key[start + 1 : end]
    return redis_key


def redis_binding(cache: BaseCache, cache_name: str) -> RedisBinding | None:
    """Return the binding of a Redis-backed Django cache, or None for any other cache.

    Opens no connection, except for a cluster (:class:`celery_events.cache.RedisClusterCache`),
    whose client asks a node for the map of slots when it is made; other clients connect on
    their first command.

    Args:
        cache: the cache, ``caches[cache_name]``.
        cache_name: its alias in ``CACHES``.

    Raises:
        LockStoreUnavailableError: the cache's client could not be made because its Redis
            cannot be reached (a cluster none of whose ``LOCATION`` nodes answers).
    """
    if isinstance(cache, RedisCache):
        try:
            client = cache._cache  # noqa: SLF001 - Django's only way to the cache's own client
        except UNREACHABLE as exc:
            msg = f"cache {cache_name!r} could not make its client: Redis is unreachable: {exc}"
            raise LockStoreUnavailableError(msg) from exc
        serializer = client._serializer  # type: ignore[attr-defined]  # noqa: SLF001 - same
        return RedisBinding(
            cache_name=cache_name,
            client=client.get_client(write=True),
            make_key=cache.make_key,
            encode=serializer.dumps,
        )
    return _django_redis_binding(cache, cache_name)


def _django_redis_binding(cache: BaseCache, cache_name: str) -> RedisBinding | None:
    try:
        from django_redis.cache import (  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
            RedisCache as DjangoRedisCache,
        )
        from django_redis.client import ShardClient  # type: ignore[import-untyped]  # noqa: PLC0415
        from django_redis.compressors.identity import (  # type: ignore[import-untyped]  # noqa: PLC0415
            IdentityCompressor,
        )
    except ImportError:
        return None
    if not isinstance(cache, DjangoRedisCache) or isinstance(cache.client, ShardClient):
        return None
    client = cache.client
    # django-redis's only ways to its serializer and compressor.
    compressor = client._compressor  # noqa: SLF001
    compresses = not isinstance(compressor, IdentityCompressor)
    return RedisBinding(
        cache_name=cache_name,
        client=client.get_client(write=True),
        make_key=cache.make_key,
        encode=client.encode,
        serialize=client._serializer.dumps if compresses else None,  # noqa: SLF001
        decompress=_decompressor(compressor) if compresses else None,
    )


def _decompressor(compressor: Any) -> Callable[[bytes], bytes | None]:
    """Return django-redis's ``compressor.decompress``, None for a value it did not compress."""
    from django_redis.exceptions import CompressorError  # type: ignore[import-untyped]  # noqa: PLC0415

    def decompress(value: bytes) -> bytes | None:
        try:
            return cast("bytes", compressor.decompress(value))
        except CompressorError:  # too short to have been compressed, or not a compressed value
            return None

    return decompress
