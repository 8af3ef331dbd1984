"""Settings of the getting-started project: a whole settings module, run by the docs tests."""

import os

SECRET_KEY = "getting-started"  # noqa: S105 - an example project
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "proj.urls"

# [start:installed-apps]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "celery_events",
    "accounts",
]
# [end:installed-apps]

# [start:celery]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# Unique locks and ignore windows live in this cache (the CACHE_NAME setting
# can name another one).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    },
}
# [end:celery]

# [start:exporters]
DJANGO_CELERY_EXTENSIONS_EXPORTERS = ["structlog", "opentelemetry"]
# [end:exporters]
