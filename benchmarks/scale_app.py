"""The Celery app of ``python -m benchmarks.scale``: one task body, unique and not.

Each body records itself in the harness's record Redis (never in the lock store, whose commands
are counted), under keys prefixed with its task's name, ``scale:<task>:``:

- ``running:<key>``: bodies of that argument in progress (``INCR`` at the start, ``DECR`` at the
  end); a start that finds another in progress adds one to ``overlaps``;
- ``runs``: a hash of task id to the number of bodies that ran under it;
- ``started`` and ``done``: bodies started and finished;
- ``last``: the wall-clock time of the latest end.

A worker adds its node name to ``scale:ready`` once it consumes.
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any, Final

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.scale_settings")

import redis
from celery import signals

from celery_events.celery import Celery

__all__ = ["BODY_SECONDS", "READY_KEY", "app", "plain", "record_prefix", "unique"]

#: How long a body takes: about what a small real task spends on its database or an API.
BODY_SECONDS: Final = 0.005
READY_KEY: Final = "scale:ready"

app = Celery("scale")
app.config_from_object("django.conf:settings", namespace="CELERY")


@cache
def _records() -> redis.Redis:
    # Read when first used (the harness imports this module before it starts the servers); a
    # forked pool child inherits the client, and redis-py reconnects in a process of its own.
    return redis.Redis.from_url(os.environ["CELERY_EVENTS_SCALE_RECORD_URL"])


def record_prefix(task_name: str) -> str:
    """Return the prefix of the record keys of ``task_name``'s bodies."""
    return f"scale:{task_name}:"


def _body(task: Any, key: int) -> None:
    """Record the start, sleep ``BODY_SECONDS``, record the end (see the module's docstring)."""
    prefix = record_prefix(task.name)
    start = _records().pipeline(transaction=False)
    start.incr(f"{prefix}running:{key}")
    start.hincrby(f"{prefix}runs", task.request.id, 1)
    start.incr(f"{prefix}started")
    running = start.execute()[0]
    if running > 1:
        _records().incr(f"{prefix}overlaps")
    time.sleep(BODY_SECONDS)
    end = _records().pipeline(transaction=False)
    end.decr(f"{prefix}running:{key}")
    end.incr(f"{prefix}done")
    # Two bodies ending together may write out of order: "last" can be early by a round trip.
    end.set(f"{prefix}last", time.time())
    end.execute()


@app.task(bind=True, name="scale.unique", unique=True, stale_time_limit=600)
def unique(self: Any, key: int) -> None:
    """The body, one call of an argument at a time (the stale time limit outlasts any run)."""
    _body(self, key)


@app.task(bind=True, name="scale.plain")
def plain(self: Any, key: int) -> None:
    """The same body, not unique."""
    _body(self, key)


@signals.worker_ready.connect
def _announce(sender: Any, **_: Any) -> None:
    _records().sadd(READY_KEY, sender.hostname)
