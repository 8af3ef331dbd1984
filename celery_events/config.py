"""Settings of celery-events, read from Django settings on access.

Every setting is a Django setting named ``DJANGO_CELERY_EXTENSIONS_<NAME>`` (the names of
django-celery-extensions, so existing settings files keep working) and is read here by its
short name: ``settings.CACHE_NAME``. A value is read from Django settings the first time it is
asked for and then kept; Django's ``setting_changed`` signal (sent by ``override_settings``)
drops the kept values, so tests that override a setting see the new value at once.

Every setting has a validator in :data:`VALIDATORS`, run on the first read: a value of the wrong
type or shape raises ``ImproperlyConfigured`` naming the setting and the value, where it is read
(at startup for most), instead of an obscure error at the first call that uses it. The system
check ``celery_events.E002`` (in ``celery_events.checks``) reads every setting, so that
``manage.py check`` reports every bad value at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .durations import positive_seconds

__all__ = [
    "DEFAULTS",
    "INDEX_ARGUMENTS_CHOICES",
    "SETTING_PREFIX",
    "VALIDATORS",
    "Settings",
    "Validator",
    "exporter_entries",
    "settings",
]

SETTING_PREFIX: Final = "DJANGO_CELERY_EXTENSIONS_"

DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "CACHE_NAME": "default",
        "UNIQUE_TASK_KEY_PREFIX": "django-celery-extensions|unique",
        "IGNORE_TASK_KEY_PREFIX": "django-celery-extensions|ignore-after-success",
        "BEATER_LOCK_KEY": "django-celery-extensions|lock",
        # The beat lock: seconds it lives unless renewed, and seconds between a standby's polls.
        # django-celery-extensions had 1500 and 300, so a standby waited up to half an hour;
        # LockedPersistentScheduler renews on every tick (at least every 15 s), so a minute is
        # ample and a standby takes over within 65 s of the holder's death (docs/locks.md).
        "LOCK_TIMEOUT": 60,
        "LOCK_SLEEP": 5,
        "DEFAULT_TASK_STALE_TIME_LIMIT": None,
        "DEFAULT_TASK_MAX_QUEUE_WAITING_TIME": None,
        "AUTO_GENERATE_TASKS_DJANGO_COMMANDS": {},
        "AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS": {},
        "AUTO_SQS_MESSAGE_GROUP_ID": False,
        "CELERY_TASK_CHECKER": None,
        "CELERY_SETTINGS": None,
        "CELERY_AUTODISCOVER": False,
        "EXPORTERS": (),
        # What the lock store's index keeps of a call's arguments: see INDEX_ARGUMENTS_CHOICES.
        "INDEX_ARGUMENTS": "redacted",
    },
)

#: The values of the ``INDEX_ARGUMENTS`` setting: what the index entry beside a held key keeps of
#: the call's arguments (``celery_events.locks.index``). ``all``: the arguments, as JSON, when they
#: are JSON and short; ``redacted``: their types and keyword names only, no values; ``none``:
#: nothing.
INDEX_ARGUMENTS_CHOICES: Final = ("all", "redacted", "none")

Validator = Callable[[object, str], Any]
"""Takes a setting's value and full name; returns the value as celery-events uses it.

It raises ``TypeError`` or ``ValueError`` (or ``ImproperlyConfigured``) with a message that
names the setting and the value; :class:`Settings` raises them as ``ImproperlyConfigured``.
"""


def _non_empty_string(value: object, what: str) -> str:
    msg = f"{what} must be a non-empty string, not {value!r}"
    if not isinstance(value, str):
        raise TypeError(msg)
    if not value:
        raise ValueError(msg)
    return value


def _seconds_or_none(value: object, what: str) -> float | None:
    return None if value is None else positive_seconds(value, what)


def _boolean(value: object, what: str) -> bool:
    # Strict: a string such as "False" read from the environment is truthy, the opposite of
    # what it says, and 0/1 are no more readable than False/True.
    if not isinstance(value, bool):
        msg = f"{what} must be True or False, not {value!r}"
        raise TypeError(msg)
    return value


def _import_path_or_none(value: object, what: str) -> str | None:
    if value is None:
        return None
    path = _non_empty_string(value, what)
    try:
        import_string(path)
    except ImportError as exc:
        msg = f"{what} must be a dotted path that imports, or None; {path!r} does not: {exc}"
        raise ValueError(msg) from exc
    return path


def _task_options(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        msg = f"{what} must be a dict of task options, not {value!r}"
        raise TypeError(msg)
    for option in value:
        if not isinstance(option, str):
            msg = f"{what}: a task option is named by a string, not {option!r}"
            raise TypeError(msg)
    return value


def _task_options_or_none(value: object, what: str) -> Mapping[str, Any]:
    return MappingProxyType({}) if value is None else _task_options(value, what)


def _command_tasks(value: object, what: str) -> Mapping[str, Mapping[str, Any] | None]:
    if not isinstance(value, Mapping):
        msg = (
            f"{what} must be a dict of management command name -> task options (a dict, or "
            f"None), not {value!r}"
        )
        raise TypeError(msg)
    for command, options in value.items():
        _non_empty_string(command, f"{what}: a management command name")
        if options is not None:
            _task_options(options, f"{what}[{command!r}]")
    return value


def _index_arguments(value: object, what: str) -> str:
    if value not in INDEX_ARGUMENTS_CHOICES:
        msg = (
            f"{what} must be one of {', '.join(map(repr, INDEX_ARGUMENTS_CHOICES))}, not {value!r}"
        )
        raise ValueError(msg)
    return value


def exporter_entries(setting: object) -> list[tuple[str, Mapping[str, Any]]]:
    """Return the exporters a value of the ``EXPORTERS`` setting names, with their options.

    Only the shape is checked here; whether a name is an exporter, and its options are its own,
    is checked when the exporters are built (``celery_events.exporters.connect_exporters``).

    Args:
        setting: a list of exporter names, or a dict of name -> options.

    Returns:
        ``(name, options)`` pairs, in the setting's order.

    Raises:
        ImproperlyConfigured: the value is not a list or dict, a name is not a string or is
            given twice, or an exporter's options are not a dict.
    """
    what = f"{SETTING_PREFIX}EXPORTERS"
    if isinstance(setting, Mapping):
        entries = list(setting.items())
    elif isinstance(setting, (list, tuple)):
        entries = [(name, {}) for name in setting]
    else:
        msg = (
            f"{what} must be a list of exporter names or a dict of name -> options, not {setting!r}"
        )
        raise ImproperlyConfigured(msg)
    seen: set[str] = set()
    for name, options in entries:
        if not isinstance(name, str):
            msg = f"{what}: an exporter name must be a string, not {name!r}"
            raise ImproperlyConfigured(msg)
        if name in seen:
            msg = f"{what} names exporter {name!r} more than once"
            raise ImproperlyConfigured(msg)
        if not isinstance(options, Mapping):
            msg = f"{what}: the options of exporter {name!r} must be a dict, not {options!r}"
            raise ImproperlyConfigured(msg)
        seen.add(name)
    return entries


def _exporters(value: object, what: str) -> object:  # noqa: ARG001 - exporter_entries names it
    exporter_entries(value)
    return value


VALIDATORS: Final[Mapping[str, Validator]] = MappingProxyType(
    {
        "CACHE_NAME": _non_empty_string,
        "UNIQUE_TASK_KEY_PREFIX": _non_empty_string,
        "IGNORE_TASK_KEY_PREFIX": _non_empty_string,
        "BEATER_LOCK_KEY": _non_empty_string,
        "LOCK_TIMEOUT": positive_seconds,
        "LOCK_SLEEP": positive_seconds,
        "DEFAULT_TASK_STALE_TIME_LIMIT": _seconds_or_none,
        "DEFAULT_TASK_MAX_QUEUE_WAITING_TIME": _seconds_or_none,
        "AUTO_GENERATE_TASKS_DJANGO_COMMANDS": _command_tasks,
        "AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS": _task_options_or_none,
        "AUTO_SQS_MESSAGE_GROUP_ID": _boolean,
        "CELERY_TASK_CHECKER": _import_path_or_none,
        "CELERY_SETTINGS": _import_path_or_none,
        "CELERY_AUTODISCOVER": _boolean,
        "EXPORTERS": _exporters,
        "INDEX_ARGUMENTS": _index_arguments,
    },
)
"""The validator of each setting of ``DEFAULTS``, by short name (see :data:`Validator`)."""


class Settings:
    """The settings of celery-events by short name, with their defaults, validated.

    Durations are read as float seconds (a ``timedelta`` too), and an absent
    ``AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS`` (``None``) as an empty mapping.

    Raises:
        AttributeError: for a name that is not a setting of celery-events.
        django.core.exceptions.ImproperlyConfigured: the setting's value is refused by its
            validator; the message names the setting and the value.
    """

    CACHE_NAME: str
    UNIQUE_TASK_KEY_PREFIX: str
    IGNORE_TASK_KEY_PREFIX: str
    BEATER_LOCK_KEY: str
    LOCK_TIMEOUT: float
    LOCK_SLEEP: float
    DEFAULT_TASK_STALE_TIME_LIMIT: float | None
    DEFAULT_TASK_MAX_QUEUE_WAITING_TIME: float | None
    AUTO_GENERATE_TASKS_DJANGO_COMMANDS: Mapping[str, Mapping[str, Any] | None]
    AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS: Mapping[str, Any]
    AUTO_SQS_MESSAGE_GROUP_ID: bool
    CELERY_TASK_CHECKER: str | None
    CELERY_SETTINGS: str | None
    CELERY_AUTODISCOVER: bool
    EXPORTERS: Any
    INDEX_ARGUMENTS: str

    def __getattr__(self, name: str) -> Any:
        """Read and validate the Django setting behind ``name``; keep it until settings change.

        A refused value is not kept: every read raises until the setting is fixed.
        """
        try:
            default = DEFAULTS[name]
        except KeyError:
            msg = (
                f"{name!r} is not a celery-events setting; the settings are: {', '.join(DEFAULTS)}"
            )
            raise AttributeError(msg) from None
        full_name = SETTING_PREFIX + name
        try:
            value = VALIDATORS[name](getattr(django_settings, full_name, default), full_name)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        # Kept as an instance attribute: the next read is a plain attribute lookup.
        setattr(self, name, value)
        return value

    def reload(self) -> None:
        """Forget every value read so far, so that the next read asks Django settings again."""
        self.__dict__.clear()


settings: Final = Settings()


def _reload_on_change(*, setting: str, **_: Any) -> None:
    if setting.startswith(SETTING_PREFIX):
        settings.reload()


setting_changed.connect(_reload_on_change, dispatch_uid="celery_events.config.reload")
