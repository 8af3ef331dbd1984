# [start:settings]
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    },
    "locks": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/1",
    },
}

# The unique locks and ignore windows live in the "locks" cache.
DJANGO_CELERY_EXTENSIONS_CACHE_NAME = "locks"
# A unique task with no stale_time_limit of its own holds its lock at most an hour.
DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT = 60 * 60
# Every task made from a management command retries when the database is unreachable.
DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS = {
    "autoretry_for": ["django.db.utils.OperationalError"],
    "default_retry_delays": (60, 300),
}
# Log every event with structlog and trace every call with OpenTelemetry.
DJANGO_CELERY_EXTENSIONS_EXPORTERS = ["structlog", "opentelemetry"]
# [end:settings]
# [start:stale]
DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_MAX_QUEUE_WAITING_TIME = 60
# [end:stale]
# [start:commands]
DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS = {
    "clearsessions": {"unique": True, "stale_time_limit": 600},
}
# [end:commands]
# [start:beat]
from celery.schedules import crontab  # noqa: E402 - shown with the setting it is for

CELERY_BEAT_SCHEDULE = {
    "clear-sessions-nightly": {
        "task": "command.django.contrib.sessions.clearsessions",
        "schedule": crontab(hour=3, minute=0),
    },
}
# [end:beat]
