"""Django settings for building the docs: enough for autodoc to import celery_events."""

SECRET_KEY = "celery-events-docs"  # noqa: S105 - builds the docs, serves nothing
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",  # celery_events.admin imports the admin log's model
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "celery_events",
]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
DATABASES: dict[str, dict[str, str]] = {}
