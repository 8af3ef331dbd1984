"""Callers of the same unique task in separate OS processes, released at one moment.

A forkserver preloads this module (and so Django and the Celery app) once; each caller process
forks from it, waits at a barrier shared by all of them and then calls ``apply_async``.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import TYPE_CHECKING

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from tests.tasks import locks_unique  # noqa: E402 - needs Django set up first

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

BARRIER_TIMEOUT = 60


def forkserver() -> ForkServerContext:
    """Return a forkserver context that preloads this module."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def call_unique(barrier: Barrier, argument: str, queue: str, task_ids: Queue[str | None]) -> None:
    """Wait for every caller, then call ``locks_unique(argument)``; report the task id got."""
    barrier.wait(BARRIER_TIMEOUT)
    task_ids.put(locks_unique.apply_async(args=(argument,), queue=queue).id)
