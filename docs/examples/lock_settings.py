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
        "BACKEND": "myproject.cache.RedisClusterCache",
        "LOCATION": "redis://cluster-node-1:6379",
    },
}
DJANGO_CELERY_EXTENSIONS_CACHE_NAME = "locks"
# [end:cluster]
