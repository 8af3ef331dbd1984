"""The Django app: wires celery-events up when the app registry is ready."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .config import SETTING_PREFIX, settings
from .exporters import connect_exporters, disconnect_exporters

if TYPE_CHECKING:
    from collections.abc import Sequence

    from celery import Celery

    from .exporters import Exporter

__all__ = ["CeleryEventsConfig"]


class CeleryEventsConfig(AppConfig):
    """Imports the Celery app, generates the command tasks and registers the system checks."""

    name = "celery_events"
    verbose_name = "Celery events"
    default = True

    command_tasks: list[Any]
    """The tasks generated from management commands, kept for inspection."""

    exporters: Sequence[Exporter] = ()
    """The exporters the EXPORTERS setting switched on, connected to the signals."""

    def ready(self) -> None:
        """Connect what the settings switch on.

        Under ``manage.py check`` a bad setting raises nothing here: the check
        ``celery_events.E002`` reports it, among every other message of the checks, where a
        traceback from here would stop the command before any check ran.

        Raises:
            django.core.exceptions.ImproperlyConfigured: a setting it reads has a value of the
                wrong type or shape (the message names the setting and the value), or names a
                Celery app that does not import, a management command that does not exist, or an
                unknown exporter, or gives an exporter a bad option.
        """
        from . import checks  # noqa: F401, PLC0415 - registers the checks

        try:
            self._start()
        except ImproperlyConfigured:
            if not _running_check_command():
                raise

    def _start(self) -> None:
        """Make the command tasks, discover the tasks and connect the exporters and cleanup."""
        from .commands import generate_command_tasks  # noqa: PLC0415
        from .task import DjangoTask  # noqa: PLC0415 - imports Celery's task machinery late

        app = import_string(settings.CELERY_SETTINGS) if settings.CELERY_SETTINGS else None
        self.command_tasks = generate_command_tasks(DjangoTask)
        if settings.CELERY_AUTODISCOVER:
            (app or _current_celery_app()).autodiscover_tasks(force=True)
        self._connect_exporters()
        setting_changed.connect(self._on_setting_changed, dispatch_uid=f"{self.name}.exporters")

        # Locks of messages a worker drops without running them to the end (celery_events.cleanup).
        from .cleanup import connect_lock_cleanup  # noqa: PLC0415 - imports Celery's signals late

        connect_lock_cleanup()

    def _connect_exporters(self) -> None:
        """Connect the exporters of the EXPORTERS setting in place of those connected before."""
        disconnect_exporters(self.exporters)
        self.exporters = ()
        self.exporters = connect_exporters(settings.EXPORTERS)

    def _on_setting_changed(self, *, setting: str, **_: Any) -> None:
        if setting == f"{SETTING_PREFIX}EXPORTERS":
            self._connect_exporters()


def _running_check_command() -> bool:
    """Return whether this process runs Django's ``check`` command.

    ``manage.py``, ``django-admin`` and ``python -m django`` all take the command's name as their
    first argument, and set Django up (which runs :meth:`CeleryEventsConfig.ready`) before the
    command runs.
    """
    return sys.argv[1:2] == ["check"]


def _current_celery_app() -> Celery:
    """Return Celery's current app.

    Not a module-level ``celery.current_app``: Django's ``AppConfig.create`` inspects this
    module's members, and inspecting that proxy makes Celery create its fallback app, which then
    stays Celery's default app. The project's app, made later, would be current only in the
    thread that made it, and every other thread (a threaded web server's, where the admin runs)
    would look tasks up on the fallback.
    """
    from celery import current_app  # noqa: PLC0415 - see above

    return current_app
