"""Django settings of the test suite: PostgreSQL, Redis cache and broker, own key prefix."""

import json
import os

from tests.services import key_prefix, redis_url

REDIS_URL = redis_url()
KEY_PREFIX = key_prefix()

SECRET_KEY = "celery-events-tests"  # noqa: S105 - tests only
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "celery_events",
    "tests.testapp",
]
# The admin section (tests/test_admin.py, tests/test_admin_browser.py).
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PGDATABASE", "test"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        # One test database per session, so that concurrent test runs never drop each other's.
        "TEST": {"NAME": "test_" + KEY_PREFIX.rstrip(":").replace("-", "_")},
    },
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        # A worker of tests/test_worker.py keeps its locks in a Redis of the test's own.
        "LOCATION": os.environ.get("CELERY_EVENTS_TEST_CACHE_URL", REDIS_URL),
        "KEY_PREFIX": f"{KEY_PREFIX}cache",
    },
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Django 6.1 sends mail through a MAILERS alias and warns (an error here) when there is none;
# older versions ignore this setting. The test environment makes each alias a locmem backend.
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}

# RabbitMQ for the worker of the exporters' amqp test (tests/test_exporter_opentelemetry.py).
CELERY_BROKER_URL = os.environ.get("CELERY_EVENTS_TEST_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_EVENTS_TEST_RESULT_BACKEND", REDIS_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": KEY_PREFIX}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": KEY_PREFIX}
CELERY_TASK_DEFAULT_QUEUE = "caller-only"  # nothing consumes it; worker tests use "worker"
# Celery's default (its own logging, standard output redirected to it) only in the worker of the
# structlog exporter's test on that logging (tests/test_exporter_structlog.py).
CELERY_WORKER_HIJACK_ROOT_LOGGER = "CELERY_EVENTS_TEST_CELERY_LOGGING" in os.environ
# The lease tests' workers (tests/test_lease.py): one without a result backend, where joins work
# from the lock store alone; one on a Redis broker that delivers a message again while its first
# delivery runs.
if os.environ.get("CELERY_EVENTS_TEST_NO_RESULT_BACKEND"):
    CELERY_RESULT_BACKEND = None
if visibility_timeout := os.environ.get("CELERY_EVENTS_TEST_VISIBILITY_TIMEOUT"):
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        # kombu looks for such messages every second, not every hundred seconds.
        visibility_timeout=float(visibility_timeout),
        unacked_restore_interval=1,
        unacked_restore_throttle=1,
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Annotated for strict mypy: tox's type environment checks this module, which the Django plugin
# loads (`make typecheck` finds it through the editable install's path, and stays silent on it).
DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS: dict[str, dict[str, object]] = {
    "record_call": {},
}
# Worker tests: the worker consumes only this queue (Celery 5.7 deprecates the queue attribute).
CELERY_TASK_ROUTES = {
    "tests.tasks.caller_*": {"queue": "caller-only"},
    "tests.tasks.concurrent_*": {"queue": "concurrent"},
    "tests.tasks.nobackend_*": {"queue": "no-backend"},
    "tests.tasks.visibility_*": {"queue": "visibility"},
    "tests.tasks.*": {"queue": "worker"},
    "command.*": {"queue": "worker"},
}
# Off, as by default, except in the exporters' workers (tests/exporter_worker.py).
DJANGO_CELERY_EXTENSIONS_EXPORTERS = json.loads(
    os.environ.get("CELERY_EVENTS_TEST_EXPORTERS", "[]")
)
