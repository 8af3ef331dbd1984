"""A Celery app whose tasks are DjangoTasks, and queues that carry default task options."""

from __future__ import annotations

from enum import Enum
from typing import Any

from celery import Celery as BaseCelery

__all__ = ["Celery", "CeleryQueueEnum"]


class CeleryQueueEnum(str, Enum):
    """Queues, each a name plus the default options of the tasks routed to it.

    A member is ``NAME = ('queue-name', {'time_limit': 10})``. Set it as a DjangoTask's
    ``queue``: the task gets the queue's name, and each option the task leaves unset::

        class Queues(CeleryQueueEnum):
            FAST = ('fast', {'time_limit': 10})

        @app.task(base=DjangoTask, queue=Queues.FAST)
        def ping(): ...
    """

    queue_name: str
    default_task_kwargs: dict[str, Any]

    def __new__(cls, queue_name: str, default_task_kwargs: dict[str, Any] | None = None) -> Any:  # noqa: D102 - Enum machinery
        member = str.__new__(cls, queue_name)
        member._value_ = queue_name
        member.queue_name = queue_name
        member.default_task_kwargs = dict(default_task_kwargs or {})
        return member

    def __str__(self) -> str:
        """Return the queue's name, as Celery expects for ``queue=``."""
        return self.queue_name


class Celery(BaseCelery):
    """A Celery app whose default task class is :class:`~celery_events.task.DjangoTask`."""

    task_cls = "celery_events.task:DjangoTask"
