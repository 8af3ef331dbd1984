"""The Django app: wires celery-events up when the app registry is ready."""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.apps import AppConfig
from django.utils.module_loading import import_string

from .config import settings

__all__ = ["CeleryEventsConfig"]


class CeleryEventsConfig(AppConfig):
    """Imports the Celery app, generates the command tasks and registers the system checks."""

    name = "celery_events"
    verbose_name = "Celery events"
    default = True

    command_tasks: list[Any]
    """The tasks generated from management commands, kept for inspection."""

    def ready(self) -> None:
        """Connect what the settings switch on.

        Raises:
            django.core.exceptions.ImproperlyConfigured: a setting names a management command
                that does not exist.
        """
        from . import checks  # noqa: F401, PLC0415 - registers the checks
        from .commands import generate_command_tasks  # noqa: PLC0415
        from .task import DjangoTask  # noqa: PLC0415 - imports Celery's task machinery late

        app = import_string(settings.CELERY_SETTINGS) if settings.CELERY_SETTINGS else None
        self.command_tasks = generate_command_tasks(DjangoTask)
        if settings.CELERY_AUTODISCOVER:
            (app or current_app).autodiscover_tasks(force=True)
