"""Django management commands as Celery tasks.

Each command named in the ``AUTO_GENERATE_TASKS_DJANGO_COMMANDS`` setting becomes a task named
``command.<app>.<command>`` when the app registry is ready; its options are the setting's
dict for that command over ``AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS``. Calling the task runs
the command: ``get_django_command_task('clearsessions').delay_on_commit()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

from celery import current_app, shared_task
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command, get_commands
from django.utils.module_loading import import_string

from .config import SETTING_PREFIX, settings
from .installed import require_installed_app

if TYPE_CHECKING:
    from collections.abc import Sequence

    from celery import Task


__all__ = ["command_task_name", "generate_command_tasks", "get_django_command_task"]


def command_task_name(command_name: str) -> str:
    """Return the name of the task that runs ``command_name``.

    Raises:
        ImproperlyConfigured: there is no management command of that name.
    """
    commands = get_commands()
    if command_name not in commands:
        msg = (
            f"{SETTING_PREFIX}AUTO_GENERATE_TASKS_DJANGO_COMMANDS names {command_name!r}, "
            "which is not a management command of this project"
        )
        raise ImproperlyConfigured(msg)
    return f"command.{commands[command_name]}.{command_name}"


def get_django_command_task(command_name: str) -> Task[Any, Any]:
    """Return the task generated for management command ``command_name``.

    Raises:
        ImproperlyConfigured: the command does not exist, or it is not listed in the
            ``AUTO_GENERATE_TASKS_DJANGO_COMMANDS`` setting, or ``'celery_events'`` is not in
            INSTALLED_APPS (its app makes the command tasks when Django starts).
    """
    require_installed_app(f"get_django_command_task({command_name!r})")
    task_name = command_task_name(command_name)
    try:
        return current_app.tasks[task_name]
    except KeyError:
        msg = (
            f"no task for command {command_name!r}: add it to "
            f"{SETTING_PREFIX}AUTO_GENERATE_TASKS_DJANGO_COMMANDS"
        )
        raise ImproperlyConfigured(msg) from None


class _CommandTask(Protocol):
    """A command task's own instance, as its body sees it (DjangoTask's command hook)."""

    def get_command_kwargs(self) -> dict[str, Any]: ...


_generated: dict[str, Task[Any, Any]] = {}
"""The command tasks made so far, by task name: a second ``ready()`` reuses them."""


def generate_command_tasks(base: type[Task[Any, Any]]) -> list[Task[Any, Any]]:
    """Create a task of class ``base`` for each command the settings name, once per command.

    Args:
        base: the task class (DjangoTask).

    Raises:
        ImproperlyConfigured: a named command does not exist, or either setting is not a dict of
            task options by name (the message names the setting and the value).
    """
    defaults = settings.AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS
    tasks = []
    for command_name, options in settings.AUTO_GENERATE_TASKS_DJANGO_COMMANDS.items():
        task_name = command_task_name(command_name)
        if task_name not in _generated:
            _generated[task_name] = _command_task(
                base, command_name, task_name, {**defaults, **(options or {})}
            )
        tasks.append(_generated[task_name])
    return tasks


def _command_task(
    base: type[Task[Any, Any]], command_name: str, task_name: str, options: dict[str, Any]
) -> Task[Any, Any]:
    options = {"bind": True, "ignore_result": True, **options}
    if "autoretry_for" in options:
        options["autoretry_for"] = tuple(
            import_string(exc) if isinstance(exc, str) else exc for exc in options["autoretry_for"]
        )

    def run_command(
        self: _CommandTask, command_args: Sequence[str] = (), **command_options: Any
    ) -> None:
        call_command(
            command_name, *command_args, **{**self.get_command_kwargs(), **command_options}
        )

    run_command.__doc__ = f"Run the management command {command_name!r}."
    # celery-types leaves shared_task untyped.
    make_task = shared_task(base=base, name=task_name, **options)
    return cast("Task[Any, Any]", make_task(run_command))  # type: ignore[no-untyped-call]
