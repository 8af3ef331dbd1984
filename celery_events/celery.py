"""A Celery app whose tasks are DjangoTasks, and queues that carry default task options."""

from __future__ import annotations

from enum import Enum
from typing import Any

from celery import Celery as BaseCelery

from .installed import require_installed_app

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

    def finalize(self, auto: bool = False) -> None:
        """Finalize the app, as Celery does before its tasks are first used or a worker starts.

        Raises:
            django.core.exceptions.ImproperlyConfigured: ``'celery_events'`` is not in
                INSTALLED_APPS (once Django's apps are ready): the tasks would run without the
                exporters, the command tasks and the cleanup that the app connects.
        """
        if not self.finalized:  # type: ignore[attr-defined]  # celery-types lacks it
            app_class = f"{type(self).__module__}.{type(self).__qualname__}"
            require_installed_app(f"Celery app {self.main!r} ({app_class})")
        super().finalize(auto=auto)
