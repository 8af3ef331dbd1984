"""Django settings of the example project: in memory by default, Redis when REDIS_URL is set.

The database is a git-ignored SQLite file beside this project, migrated by ``demo.py`` (or
``manage.py migrate``). Django's local-memory cache lives and dies with each process, so
``manage.py celery_events`` and the admin's held locks page see the locks and ignore windows of
other processes only when they are in Redis (REDIS_URL).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

# A key in the repository is safe only because the example's one server is `manage.py runserver`
# on the developer's own machine (the README's admin section); it is never deployed.
SECRET_KEY = "celery-events-demo"
# For the same reason: runserver serves the admin's CSS and JavaScript only with DEBUG on, and
# with ALLOWED_HOSTS empty DEBUG admits the local host names alone.
DEBUG = True
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
INSTALLED_APPS = [
    # What the admin needs: its users, permissions and sessions, and its static files.
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "celery_events",
    "orders",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "demo_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,  # the admin's templates, and celery_events' own
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
STATIC_URL = "static/"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "demo.sqlite3"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL")
REDIS_KEY_PREFIX: str | None
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    # Every key of the project (cache, broker, results) is under this prefix, which all its
    # processes share, so that manage.py sees the locks that the others hold. demo.py adds a
    # prefix of its run's own (DEMO_RUN_KEY_PREFIX), to delete exactly its keys when it ends.
    PROJECT_KEY_PREFIX = os.environ.get("DEMO_REDIS_KEY_PREFIX", "celery-events-demo:")
    REDIS_KEY_PREFIX = PROJECT_KEY_PREFIX + os.environ.get("DEMO_RUN_KEY_PREFIX", "")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{REDIS_KEY_PREFIX}cache",
        },
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX}
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX}
else:
    REDIS_KEY_PREFIX = None
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Celery's in-memory transport; the host means nothing to it, but without one kombu warns
    # "No hostname was supplied" at every connection.
    CELERY_BROKER_URL = "memory://localhost/"
    # The in-memory transport polls its queues, once a second by default: too slow for a demo.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.01}
    CELERY_RESULT_BACKEND = "cache+memory://"

CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Celery leaves logging to this setting (see demo_site/celery.py). Warnings and errors reach
# stderr, so a receiver that raises shows up (celery-events logs it on "celery_events"); Celery's
# trace logger is quieted because the demo's own event lines already report the deliberate
# failure, and its traceback would bury them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"celery.app.trace": {"level": "CRITICAL"}},
}

# The built-in exporters turn the event stream into structlog log lines and OpenTelemetry
# spans (docs/exporters.md). Where those go is the project's to configure: demo.py sends the
# lines to a buffer and the spans to the SDK's in-memory exporter, and prints both at the end.
DJANGO_CELERY_EXTENSIONS_EXPORTERS = ["structlog", "opentelemetry"]
