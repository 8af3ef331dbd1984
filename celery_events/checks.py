"""Django system checks: misspelled settings, a lock store that evicts, the project's checker."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

import redis
from celery import current_app
from django.conf import settings as django_settings
from django.core.cache import InvalidCacheBackendError
from django.core.checks import CheckMessage, Error, Tags, Warning, register  # noqa: A004
from django.utils.module_loading import import_string

from .config import DEFAULTS, SETTING_PREFIX, settings
from .locks import RedisLockStore, get_lock_store

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.apps import AppConfig

__all__ = ["check_celery_tasks", "check_lock_store_eviction", "check_setting_names"]

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


@register(Tags.caches)
def check_lock_store_eviction(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Warn when the lock store's Redis may evict the keys of unique locks and ignore windows.

    A lock evicted under memory pressure lets a second call of the same arguments run beside
    the first; an evicted ignore window lets a call run that should have been ignored. Every
    such key has a time to live, so the ``volatile-*`` policies evict them as readily as the
    ``allkeys-*`` ones: only ``noeviction``, or no ``maxmemory``, keeps them. Nothing is
    reported when the policy cannot be read: a cache that is not in Redis, a server that refuses
    ``CONFIG GET`` (managed services often do), or one that cannot be reached.
    """
    try:
        store = get_lock_store()
    except InvalidCacheBackendError:  # a CACHE_NAME that names no cache fails at the first call
        return []
    if not isinstance(store, RedisLockStore):
        return []
    try:
        config = {
            _text(name): _text(value)
            for name, value in store.binding.client.config_get("maxmemory*").items()
        }
    except redis.RedisError:
        return []
    policy = config.get("maxmemory-policy", "noeviction")
    if policy == "noeviction" or config.get("maxmemory", "0") == "0":
        return []
    cache_name = settings.CACHE_NAME
    return [
        Warning(
            f"the Redis of cache {cache_name!r}, where unique locks and ignore windows live, "
            f"evicts keys when full (maxmemory {config['maxmemory']}, maxmemory-policy "
            f"{policy}): an evicted lock lets a call run twice",
            hint=(
                "Set maxmemory-policy noeviction on that Redis, or point "
                f"{SETTING_PREFIX}CACHE_NAME at a cache on a Redis that does not evict."
            ),
            id="celery_events.W001",
        )
    ]


def _text(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
