"""The beat schedule of the beat tests: entries due once per time slot, sends that say which.

The beat processes that the tests start run the tests' Celery app through this module
(``celery -A tests.beat_app beat``, with tests.beat_settings), which gives it a schedule from
the environment; tests that drive schedulers in their own process use ``slot_entries``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from celery.beat import BeatLazyFunc
from celery.schedules import BaseSchedule, schedstate

from tests.celery_app import app

if TYPE_CHECKING:
    from datetime import datetime

TICK_TASK = "tests.beat.tick"


class SlotSchedule(BaseSchedule):
    """Due once in each slot of ``seconds`` counted from the epoch, as a crontab is per minute.

    Keeps the slot it last found due, for the entry's arguments: so every send says which due
    time it serves.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.due_slot: int | None = None

    def __reduce__(self) -> tuple[type[SlotSchedule], tuple[float]]:
        return type(self), (self.seconds,)

    def slot(self, when: datetime) -> int:
        return int(when.timestamp() // self.seconds)

    def found_due(self) -> int | None:
        return self.due_slot

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = self.now()
        current = self.slot(now)
        if current > self.slot(last_run_at):
            self.due_slot = current
            return schedstate(is_due=True, next=0)
        return schedstate(is_due=False, next=(current + 1) * self.seconds - now.timestamp())


def slot_entries(queue: str, **seconds: float) -> dict[str, dict[str, Any]]:
    """Return beat_schedule entries, one a name, due once per slot of the given seconds.

    Each sends ``tests.beat.tick(name, slot, pid)`` to ``queue``: the slot it found due and the
    process id of the beat that sent it.
    """
    entries = {}
    for name, length in seconds.items():
        schedule = SlotSchedule(length)
        entries[name] = {
            "task": TICK_TASK,
            "schedule": schedule,
            "args": (name, BeatLazyFunc(schedule.found_due), BeatLazyFunc(os.getpid)),
            "options": {"queue": queue},
        }
    return entries


if "BEAT_TEST_QUEUE" in os.environ:
    app.conf.beat_schedule = slot_entries(os.environ["BEAT_TEST_QUEUE"], fast=1, slow=4)
