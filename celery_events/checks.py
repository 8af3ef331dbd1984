"""Django system checks of the settings, the lock cache, the Celery app and the tasks.

The ids, each documented in docs/configuration.md: ``celery_events.E001`` an unknown setting,
``E002`` a refused value, ``E003`` a ``CACHE_NAME`` that names no cache, ``E004`` no Celery app
loaded when Django starts, ``W001`` a lock store whose Redis evicts keys, ``W002`` a task that
locks in a cache that processes do not share, ``W003`` a unique task with no stale time limit,
``W004`` the OpenTelemetry exporter beside opentelemetry-instrumentation-celery with another
shape of trace asked of each; and whatever the project's ``CELERY_TASK_CHECKER`` reports.
``E005``, the app missing from INSTALLED_APPS, is in :mod:`celery_events.installed`, since this
module is imported by the app.
"""

from __future__ import annotations

import difflib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import redis
from celery import current_app
from celery.exceptions import CeleryError
from django.apps import apps
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.checks import CheckMessage, Error, Tags, Warning, register  # noqa: A004
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules, import_string

from .commands import command_task_name
from .config import DEFAULTS, SETTING_PREFIX, settings
from .exporters import build_exporters
from .exporters.neighbours import celery_instrumentation
from .exporters.opentelemetry import OpenTelemetryExporter
from .locks import LockStoreUnavailableError, RedisLockStore, get_lock_store
from .options import stale_time_limit
from .task import DjangoTask

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from django.apps import AppConfig
    from django.core.cache.backends.base import BaseCache

__all__ = [
    "UNSHARED_CACHES",
    "check_cache_name",
    "check_celery_app_loaded",
    "check_celery_tasks",
    "check_exporter_beside_instrumentor",
    "check_lock_cache_shared",
    "check_lock_store_eviction",
    "check_setting_names",
    "check_setting_values",
    "check_unique_tasks_stale_time_limit",
]

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
def check_setting_values(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Report every setting whose value is refused, each as ``celery_events.E002``.

    Every setting is read (see :class:`~celery_events.config.Settings`), and the values that
    the app's start-up uses are used as it does (:data:`_STARTUP_USES`), so that all the bad
    values are reported at once rather than one per start-up. Under ``manage.py check``, the
    app's start-up leaves its errors to this check (see :mod:`celery_events.apps`).
    """
    return [error for error in map(_refusal, DEFAULTS) if error is not None]


def _name_commands(value: Any) -> None:
    """Name the task of every command of AUTO_GENERATE_TASKS_DJANGO_COMMANDS, as the app does."""
    for command_name in value:
        command_task_name(command_name)


_STARTUP_USES: Final[Mapping[str, Callable[[Any], object]]] = MappingProxyType(
    {"EXPORTERS": build_exporters, "AUTO_GENERATE_TASKS_DJANGO_COMMANDS": _name_commands}
)
"""What the app's start-up does with a setting's value beyond its validator, by setting: an
unknown exporter or option, or a command that does not exist, is refused there."""


def _refusal(name: str) -> CheckMessage | None:
    try:
        value = getattr(settings, name)
        if name in _STARTUP_USES:
            _STARTUP_USES[name](value)
    except ImproperlyConfigured as exc:
        return Error(
            str(exc),
            hint=(
                f"The section {SETTING_PREFIX}{name} of celery-events' configuration docs "
                "gives the values it takes."
            ),
            id="celery_events.E002",
        )
    return None


@register(Tags.caches)
def check_cache_name(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Report a ``CACHE_NAME`` that names no cache of ``CACHES`` as ``celery_events.E003``.

    Checked here rather than where the setting is read: the value is kept until a setting of
    celery-events changes, while ``CACHES`` may change on its own.
    """
    try:
        cache_name = settings.CACHE_NAME
    except ImproperlyConfigured:  # reported by check_setting_values
        return []
    if cache_name in django_settings.CACHES:
        return []
    return [
        Error(
            f"{SETTING_PREFIX}CACHE_NAME is {cache_name!r}, which names no cache in CACHES: "
            "unique locks and ignore windows have no cache to live in",
            hint=(
                f"Add a cache named {cache_name!r} to CACHES, or name one of its caches: "
                f"{', '.join(map(repr, django_settings.CACHES)) or 'there are none'}."
            ),
            id="celery_events.E003",
        )
    ]


UNSHARED_CACHES: Final[Mapping[type[BaseCache], str]] = MappingProxyType(
    {
        LocMemCache: "keeps its keys in the memory of each process",
        DummyCache: "keeps no key at all, so that every lock is granted",
        # It can be shared through a common directory, but add() tests for the file and then
        # writes it: two processes can both take a lock.
        FileBasedCache: "takes a key by looking for its file, then writing it, not atomically",
    }
)
"""The cache backends that cannot hold a lock between processes, with the reason."""

_TASKS_SHOWN: Final = 3
"""How many of the tasks that lock a W002 names; it counts the others."""


@register(Tags.caches)
def check_lock_cache_shared(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Warn when a task takes locks in a cache that processes do not share (``W002``).

    The tasks that take locks are the DjangoTasks that are ``unique`` or have an
    ``ignore_task_timedelta``; the caches that processes do not share are
    :data:`UNSHARED_CACHES`. In such a cache, a call in one process does not see the lock or
    the ignore window of a call in another, so that both run.
    """
    try:
        cache_name = settings.CACHE_NAME
        cache = caches[cache_name]
    except ImproperlyConfigured:  # reported by check_setting_values or check_cache_name
        return []
    reason = next(
        (why for backend, why in UNSHARED_CACHES.items() if isinstance(cache, backend)), None
    )
    if reason is None:
        return []
    locking = [
        name
        for name, task in _django_tasks()
        if task.unique or task.ignore_task_timedelta is not None
    ]
    if not locking:
        return []
    shown = ", ".join(locking[:_TASKS_SHOWN])
    if len(locking) > _TASKS_SHOWN:
        shown += f" and {len(locking) - _TASKS_SHOWN} more"
    backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
    return [
        Warning(
            f"cache {cache_name!r} ({SETTING_PREFIX}CACHE_NAME) is a {backend}, which {reason}: "
            f"the unique locks and ignore windows of {shown} do not hold between processes",
            hint=(
                f"Point {SETTING_PREFIX}CACHE_NAME at a cache that every process shares, such as "
                "django.core.cache.backends.redis.RedisCache (whose locks are also atomic)."
            ),
            id="celery_events.W002",
        )
    ]


def _django_tasks() -> list[tuple[str, DjangoTask]]:
    """Return the DjangoTasks of the current Celery app by name, as a worker would find them.

    The project's task modules are imported by Celery's autodiscovery only when a worker
    starts, and not at all by ``manage.py check``: they are imported here.
    """
    current_app.autodiscover_tasks(force=True)
    return sorted(
        (name, task) for name, task in current_app.tasks.items() if isinstance(task, DjangoTask)
    )


@register()
def check_unique_tasks_stale_time_limit(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Warn about each unique task that has no stale time limit (``celery_events.W003``).

    A unique call needs one (the longest its lock may outlive a holder that stopped), from the
    call, the task or the settings, or derived from a time limit: a call that has none from
    anywhere is refused with CeleryError. Only a warning, since each call may give its own.
    """
    try:
        settings.DEFAULT_TASK_STALE_TIME_LIMIT  # noqa: B018 - read by stale_time_limit below
    except ImproperlyConfigured:  # reported by check_setting_values
        return []
    messages: list[CheckMessage] = []
    for name, task in _django_tasks():
        if not task.unique:
            continue
        try:
            stale_time_limit(task, None, None)
        except CeleryError:
            messages.append(
                Warning(
                    "unique task without a stale time limit: every call that does not give "
                    "stale_time_limit fails with CeleryError",
                    hint=(
                        "Give the task one (@shared_task(unique=True, stale_time_limit=600)), "
                        "give one to every call (apply_async(..., stale_time_limit=600)), or "
                        f"set {SETTING_PREFIX}DEFAULT_TASK_STALE_TIME_LIMIT."
                    ),
                    obj=name,
                    id="celery_events.W003",
                )
            )
    return messages


@register()
def check_celery_app_loaded(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Report that no Celery app is loaded when Django starts (``celery_events.E004``).

    Once the ``tasks`` modules of the installed apps are imported (as they are wherever the
    tasks are called), Celery's current app should be the project's. If it is still the fallback
    that Celery makes when no app was ever made, the project never imported its app: every
    ``@shared_task`` is then a plain Celery task in the processes Django runs (no lock, no
    event), and a call is published as the fallback's default configuration says, not as the
    ``CELERY_`` settings do.
    """
    autodiscover_modules("tasks")
    # Celery's fallback: Celery("default", set_as_current=False), made on first use of
    # current_app when no app was made current (celery._state).
    if current_app.main != "default" or current_app.set_as_current:  # type: ignore[attr-defined]  # celery-types lacks it
        return []
    package = getattr(django_settings, "SETTINGS_MODULE", "").rpartition(".")[0]
    init = f"{package.replace('.', '/')}/__init__.py" if package else "the project's __init__.py"
    return [
        Error(
            "no Celery app is loaded when Django starts: Celery's fallback app is current, so "
            "@shared_task makes plain Celery tasks (no unique lock, no ignore window, no event) "
            "that publish with Celery's defaults instead of the CELERY_ settings",
            hint=(
                f"Import the project's Celery app in {init}: "
                "from .celery import app as celery_app "
                f"(or name it in {SETTING_PREFIX}CELERY_SETTINGS)."
            ),
            id="celery_events.E004",
        )
    ]


@register()
def check_celery_tasks(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Run the ``CELERY_TASK_CHECKER`` callable on every task that is not Celery's own.

    The checker is called as ``checker(task_name, task)`` and returns a CheckMessage or None.
    """
    try:
        checker_path = settings.CELERY_TASK_CHECKER
    except ImproperlyConfigured:  # reported by check_setting_values
        return []
    if checker_path is None:
        return []
    checker = import_string(checker_path)
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
    except ImproperlyConfigured:  # reported by check_setting_values or check_cache_name
        return []
    except LockStoreUnavailableError:  # a cluster client asks its nodes when it is made
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


@register()
def check_exporter_beside_instrumentor(
    app_configs: Sequence[AppConfig] | None,  # noqa: ARG001 - Django's check signature
    **kwargs: Any,  # noqa: ARG001
) -> list[CheckMessage]:
    """Warn when the exporter and the Celery instrumentor are asked for different trace shapes.

    Beside opentelemetry-instrumentation-celery, the attempts' spans are the instrumentor's,
    children of the call's span or linked to it as the instrumentor's ``use_span_links`` says:
    the exporter's ``link_to_producer`` cannot change that.
    """
    instrumentation = celery_instrumentation()
    if instrumentation is None or not instrumentation.active:
        return []
    config = apps.get_app_config("celery_events")
    links = instrumentation.uses_span_links
    return [
        Warning(
            f"the opentelemetry exporter's link_to_producer is {exporter.link_to_producer}, "
            f"and CeleryInstrumentor traces this process with use_span_links={links}: beside "
            "the instrumentor, each attempt's span is the instrumentor's, made as it says",
            hint=(
                f"Give the exporter link_to_producer={links} (in {SETTING_PREFIX}EXPORTERS), "
                f"or instrument Celery with use_span_links={exporter.link_to_producer}."
            ),
            id="celery_events.W004",
        )
        for exporter in getattr(config, "exporters", ())
        if isinstance(exporter, OpenTelemetryExporter) and exporter.link_to_producer != links
    ]


def _text(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
