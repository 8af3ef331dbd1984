"""The cache backends for a Redis Cluster and for Sentinel: Django's cache API, refused options.

The lock store on them is tested in test_locks.py and test_locks_redis.py.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import CacheHandler
from django.core.exceptions import ImproperlyConfigured

from tests.redis_topologies import cluster_cache


def _cache(config):
    return CacheHandler({"under-test": config})["under-test"]


@pytest.fixture(name="cluster")
def fixture_cluster(redis_cluster):
    """Django's cache API on the session's cluster, under a prefix of the test's own."""
    config = cluster_cache(redis_cluster)
    return _cache({**config, "KEY_PREFIX": f"{config['KEY_PREFIX']}{uuid.uuid4().hex}"})


def test_cluster_cache_reads_and_writes_many_keys_over_every_slot(cluster):
    data = {f"key-{number}": number for number in range(30)}

    cluster.set_many(data, timeout=60)
    read = cluster.get_many([*data, "missing"])
    cluster.delete_many(list(data))

    assert read == data
    assert cluster.get_many(list(data)) == {}


def test_cluster_cache_set_many_with_a_timeout_of_zero_stores_nothing(cluster):
    cluster.set("kept-out", "old")

    cluster.set_many({"kept-out": "new", "never-in": 1}, timeout=0)

    assert cluster.get_many(["kept-out", "never-in"]) == {}


def test_sentinel_cache_reads_from_the_primary_whatever_location_lists(redis_sentinel):
    config = redis_sentinel.cache()
    # Django's client reads from LOCATION's other entries; here those are sentinels, which
    # answer no GET: the value comes back only if the read went to the primary.
    sentinel_cache = _cache({**config, "LOCATION": [config["LOCATION"]] * 3})
    key = f"test-cache|{uuid.uuid4()}"

    sentinel_cache.set(key, "written", timeout=60)

    assert [sentinel_cache.get(key) for _ in range(5)] == ["written"] * 5
    sentinel_cache.delete(key)


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("RedisClusterCache", {"socket_timeot": 2}, "RedisCluster takes no option 'socket_timeot'"),
        ("RedisClusterCache", {"pool_class": "x.Pool"}, "takes no pool_class option"),
        ("RedisClusterCache", {"parser_class": "x.Parser"}, "takes no parser_class option"),
        ("RedisSentinelCache", {}, r"needs OPTIONS\['service_name'\]"),
        (
            "RedisSentinelCache",
            {"service_name": "mymaster", "pool_class": "x.Pool"},
            "takes no pool_class option",
        ),
    ],
    ids=["cluster-unknown", "cluster-pool", "cluster-parser", "sentinel-service", "sentinel-pool"],
)
def test_backend_refuses_an_option_it_would_not_use_naming_it(backend, options, message):
    # The cluster's LOCATION is never reached: options are checked before any connection.
    cache = _cache(
        {
            "BACKEND": f"celery_events.cache.{backend}",
            "LOCATION": "redis://127.0.0.1:1",
            "OPTIONS": options,
        }
    )

    with pytest.raises(ImproperlyConfigured, match=message):
        cache.get("k")


def test_location_entry_without_a_host_is_refused_naming_it():
    cache = _cache(
        {
            "BACKEND": "celery_events.cache.RedisSentinelCache",
            "LOCATION": "redis://:26379",
            "OPTIONS": {"service_name": "mymaster"},
        }
    )

    with pytest.raises(ImproperlyConfigured, match="LOCATION entry 'redis://:26379' names no host"):
        cache.get("k")
