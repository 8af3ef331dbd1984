"""Django system checks: misspelled settings and the project's own task checker."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from celery import current_app
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, register
from django.utils.module_loading import import_string

from .config import DEFAULTS, SETTING_PREFIX, settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.apps import AppConfig

__all__ = ["check_celery_tasks", "check_setting_names"]

#: Settings of django-celery-extensions that celery-events names differently.
RENAMED = {"IGNORE_TASK_AFTER_SUCCESS_KEY_PREFIX": "IGNORE_TASK_KEY_PREFIX"}


@register()
def check_setting_names(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Report every ``DJANGO_CELERY_EXTENSIONS_*`` setting that celery-events does not know."""
    errors: list[CheckMessage] = []
    for name in dir(django_settings):
        if not name.startswith(SETTING_PREFIX) or name[len(SETTING_PREFIX) :] in DEFAULTS:
            continue
        short_name = name[len(SETTING_PREFIX) :]
        guess = RENAMED.get(short_name) or next(
            iter(difflib.get_close_matches(short_name, DEFAULTS, n=1)), None
        )
        hint = (
            f"Did you mean {SETTING_PREFIX}{guess}?"
            if guess
            else f"The settings are: {', '.join(SETTING_PREFIX + known for known in DEFAULTS)}."
        )
        errors.append(
            Error(
                f"unknown setting {name}: celery-events ignores it",
                hint=hint,
                id="celery_events.E001",
            )
        )
    return errors


@register()
def check_celery_tasks(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Run the ``CELERY_TASK_CHECKER`` callable on every task that is not Celery's own.

    The checker is called as ``checker(task_name, task)`` and returns a CheckMessage or None.
    """
    if not settings.CELERY_TASK_CHECKER:
        return []
    checker = import_string(settings.CELERY_TASK_CHECKER)
    messages = (
        checker(name, task)
        for name, task in current_app.tasks.items()
        if not name.startswith("celery.")
    )
    return [message for message in messages if message is not None]
