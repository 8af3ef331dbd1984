"""Django settings of ``python -m benchmarks.scale``, its producers and its worker subprocesses.

The harness exports its private servers and its queue in the environment before it starts any
process that imports this module: the lock store (the default cache) is a Redis of its own, so
that its command counts are the lock store's alone.
"""

import os

SECRET_KEY = "celery-events-benchmarks"
USE_TZ = True
INSTALLED_APPS = ["celery_events"]
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["CELERY_EVENTS_SCALE_LOCK_URL"],
        "KEY_PREFIX": "scale",
    },
}
LOGGING_CONFIG = None

CELERY_BROKER_URL = os.environ["CELERY_EVENTS_SCALE_BROKER_URL"]
CELERY_TASK_DEFAULT_QUEUE = os.environ["CELERY_EVENTS_SCALE_QUEUE"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# No pidbox queue nor event exchange: the run's queue is all it leaves on a shared RabbitMQ.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
