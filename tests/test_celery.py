"""The Celery app class and queues with default task options."""

from __future__ import annotations

from celery_events.celery import Celery, CeleryQueueEnum
from celery_events.task import DjangoTask


class Queues(CeleryQueueEnum):
    FAST = ("fast", {"time_limit": 10, "soft_time_limit": 8})
    SLOW = ("slow", None)


def test_celery_app_tasks_are_django_tasks(celery_app):
    assert isinstance(celery_app, Celery)
    assert issubclass(celery_app.Task, DjangoTask)


def test_queue_enum_member_is_its_queue_name():
    assert Queues.FAST == "fast"
    assert str(Queues.FAST) == "fast"
    assert Queues.FAST.default_task_kwargs == {"time_limit": 10, "soft_time_limit": 8}
    assert Queues.SLOW.default_task_kwargs == {}


def test_task_on_queue_enum_gets_the_queue_name_and_unset_defaults():
    fast = type("FastTask", (DjangoTask,), {"queue": Queues.FAST, "time_limit": 5})

    assert fast.queue == "fast"
    assert fast.time_limit == 5
    assert fast.soft_time_limit == 8
