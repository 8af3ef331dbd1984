"""The Celery app and settings of ``python -m benchmarks.joins``: a held call, its joiners, leases.

The harness exports its private Redis (lock store, broker, results, records) in the environment
before any process imports this module. Tasks:

- ``joins.held(gate)``: unique; waits until the harness opens ``gate``, records the time it
  returns, and returns the gate;
- ``joins.leased(key, seconds)``: unique, stale time limit 3 s; sleeps ``seconds``.

In a worker, every message published (stand-ins woken, watches) adds one to
``joins:published:<task id>``, and every renewal of the process's leases adds one to
``joins:renewals`` and the number of leases renewed to ``joins:leases-renewed``.
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any, Final

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY="celery-events-benchmarks",
        USE_TZ=True,
        INSTALLED_APPS=["celery_events"],
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": os.environ["CELERY_EVENTS_JOINS_REDIS_URL"],
                "KEY_PREFIX": "joins",
            },
        },
        LOGGING_CONFIG=None,
        CELERY_BROKER_URL=os.environ["CELERY_EVENTS_JOINS_REDIS_URL"],
        CELERY_RESULT_BACKEND=os.environ["CELERY_EVENTS_JOINS_REDIS_URL"],
        CELERY_TASK_DEFAULT_QUEUE="joins",
        CELERY_WORKER_HIJACK_ROOT_LOGGER=False,
        CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP=True,
        CELERY_WORKER_ENABLE_REMOTE_CONTROL=False,
    )
    django.setup()

import redis
from celery import signals

from celery_events.celery import Celery
from celery_events.locks.leases import keeper

__all__ = ["READY_KEY", "app", "held", "leased", "records"]

READY_KEY: Final = "joins:ready"

app = Celery("joins")
app.config_from_object("django.conf:settings", namespace="CELERY")


@cache
def records() -> redis.Redis:
    """The harness's Redis, for what the bodies and the worker record."""
    return redis.Redis.from_url(os.environ["CELERY_EVENTS_JOINS_REDIS_URL"])


@app.task(name="joins.held", unique=True, stale_time_limit=30)
def held(gate: str) -> str:
    """Wait until ``gate`` is opened; record when it returns."""
    client = records()
    client.set(f"joins:started:{gate}", 1)
    while client.blpop([f"joins:gate:{gate}"], timeout=1) is None:
        pass
    client.set(f"joins:ended:{gate}", time.time())
    return gate


@app.task(name="joins.leased", unique=True, stale_time_limit=3)
def leased(key: int, seconds: float) -> None:  # noqa: ARG001 - the unique key's argument
    """Hold the lease of ``key`` for ``seconds``."""
    time.sleep(seconds)


@signals.before_task_publish.connect
def _count_publish(headers: dict[str, Any], **_: Any) -> None:
    records().incr(f"joins:published:{headers['id']}")


_renew = keeper.renew


def _counted_renewal() -> None:
    """The keeper's renewal, counted: one call is one pipeline, one round trip to Redis."""
    held_now = len(keeper.held())
    _renew()
    counts = records().pipeline(transaction=False)
    counts.incr("joins:renewals")
    counts.incrby("joins:leases-renewed", held_now)
    counts.execute()


keeper.renew = _counted_renewal  # type: ignore[method-assign]  # the benchmark's count


@signals.worker_ready.connect
def _announce(sender: Any, **_: Any) -> None:
    records().sadd(READY_KEY, sender.hostname)
