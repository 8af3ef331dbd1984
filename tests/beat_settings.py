"""Settings of the beat processes the tests start: the tests' own, with a beat lock of theirs."""

import os

from tests.settings import *  # noqa: F403 - the tests' settings, with these on top
from tests.settings import CACHES, KEY_PREFIX

DJANGO_CELERY_EXTENSIONS_BEATER_LOCK_KEY = os.environ["BEAT_TEST_LOCK_KEY"]
DJANGO_CELERY_EXTENSIONS_LOCK_TIMEOUT = float(os.environ["BEAT_TEST_LOCK_TIMEOUT"])
DJANGO_CELERY_EXTENSIONS_LOCK_SLEEP = float(os.environ["BEAT_TEST_LOCK_SLEEP"])
DJANGO_CELERY_EXTENSIONS_CACHE_NAME = os.environ.get("BEAT_TEST_CACHE_NAME", "default")
if "BEAT_TEST_UNREACHABLE_REDIS_URL" in os.environ:
    CACHES = {
        **CACHES,
        "unreachable": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["BEAT_TEST_UNREACHABLE_REDIS_URL"],
            "KEY_PREFIX": KEY_PREFIX,
        },
    }
if "BEAT_TEST_SCHEDULER_SETTING" in os.environ:  # as docs/locks.md says, instead of -S
    CELERY_BEAT_SCHEDULER = "celery_events.beat.LockedPersistentScheduler"
