"""What a project meets when it uses celery-events without ``'celery_events'`` in INSTALLED_APPS.

celery-events wires itself up when Django starts its app (:mod:`celery_events.apps`): it connects
the exporters, makes the command tasks, cleans up the locks of messages a worker drops, and
registers the system checks. Without the app none of that happens, and nothing says so: tasks
still run, with no exporter, no command task and no check. So this module, which the package
imports (whatever part of celery-events a project imports, this is imported too), registers a
system check of its own (``celery_events.E005``), and :func:`require_installed_app` raises a
clear error where a project first leans on the app (the Celery app of :mod:`celery_events.celery`,
:func:`~celery_events.commands.get_django_command_task`).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from django.apps import apps
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.apps import AppConfig

__all__ = ["APP_NAME", "check_app_installed", "require_installed_app"]

APP_NAME: Final = "celery_events"
"""The name of celery-events' Django app, as INSTALLED_APPS lists it."""

_WITHOUT_IT: Final = (
    "so Django never starts it: the exporters are not connected, the command tasks are not "
    "made, the locks of dropped messages are not released and the system checks do not run"
)

_HINT: Final = f"Add {APP_NAME!r} to INSTALLED_APPS in the project's settings."


@register()
def check_app_installed(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Report celery-events used while its app is not in INSTALLED_APPS (``celery_events.E005``).

    Registered when this module is imported, with the package, rather than by the app's
    ``ready()``, which does not run when the app is not installed.
    """
    if apps.is_installed(APP_NAME):
        return []
    return [
        Error(
            f"celery-events is used, but {APP_NAME!r} is not in INSTALLED_APPS, {_WITHOUT_IT}",
            hint=_HINT,
            id="celery_events.E005",
        )
    ]


def require_installed_app(user: str) -> None:
    """Raise unless celery-events' app is installed, once Django's apps are ready.

    Before Django's apps are ready (a module imported while the settings load), nothing can be
    known and nothing is raised.

    Args:
        user: what needs the app, for the message (``"Celery app 'proj'"``).

    Raises:
        ImproperlyConfigured: Django's apps are ready and ``'celery_events'`` is not among them.
    """
    if apps.ready and not apps.is_installed(APP_NAME):
        msg = f"{user} needs {APP_NAME!r} in INSTALLED_APPS, which lacks it, {_WITHOUT_IT}. {_HINT}"
        raise ImproperlyConfigured(msg)
