"""Django settings of the benchmarks: a private Redis for the lock store, nothing else."""

import os

SECRET_KEY = "celery-events-benchmarks"
USE_TZ = True
INSTALLED_APPS = ["celery_events"]
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["CELERY_EVENTS_BENCH_REDIS_URL"],
        "KEY_PREFIX": "bench",
    },
}
LOGGING_CONFIG = None
