"""Cache settings for the lock store, as docs/locks.md shows them."""

# [start:timeouts]
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://redis:6379/0",
        # Passed to redis-py's connection pool: the longest a lock operation waits.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    },
}
# [end:timeouts]
# [start:cluster]
CLUSTER_CACHES = {
    "locks": {
        "BACKEND": "celery_events.cache.RedisClusterCache",
        # Any nodes of the cluster: the client asks them for the others and the slot map.
        "LOCATION": ["redis://cluster-node-1:6379", "redis://cluster-node-2:6379"],
        # The KEY_PREFIX (and VERSION, KEY_FUNCTION) of the cache the locks were in before, so
        # that old and new processes use the same keys.
        "KEY_PREFIX": "myproject",
        # Passed to redis-py's RedisCluster, with password, ssl, read_from_replicas...
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    },
}
DJANGO_CELERY_EXTENSIONS_CACHE_NAME = "locks"
# [end:cluster]
# [start:sentinel]
SENTINEL_CACHES = {
    "locks": {
        "BACKEND": "celery_events.cache.RedisSentinelCache",
        # The sentinels, which name the primary: every command goes to it, reads too.
        "LOCATION": [
            "redis://sentinel-1:26379",
            "redis://sentinel-2:26379",
            "redis://sentinel-3:26379",
        ],
        "KEY_PREFIX": "myproject",
        "OPTIONS": {
            # The name the sentinels monitor the primary under (sentinel monitor <name> ...).
            "service_name": "mymaster",
            # Bound every command, those that meet a failover too, and the questions to the
            # sentinels (they take the socket_* options unless sentinel_kwargs says otherwise).
            "socket_connect_timeout": 2,
            "socket_timeout": 2,
            # The primary's password would go here ("password": ...); the sentinels' in
            # "sentinel_kwargs": {"password": ...}.
        },
    },
}
DJANGO_CELERY_EXTENSIONS_CACHE_NAME = "locks"
# [end:sentinel]
