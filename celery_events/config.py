"""Settings of celery-events, read from Django settings on access.

Every setting is a Django setting named ``DJANGO_CELERY_EXTENSIONS_<NAME>`` (the names of
django-celery-extensions, so existing settings files keep working) and is read here by its
short name: ``settings.CACHE_NAME``. A value is read from Django settings the first time it is
asked for and then kept; Django's ``setting_changed`` signal (sent by ``override_settings``)
drops the kept values, so tests that override a setting see the new value at once.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from django.conf import settings as django_settings
from django.core.signals import setting_changed

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULTS", "SETTING_PREFIX", "Settings", "settings"]

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
    },
)


class Settings:
    """The settings of celery-events by short name, with their defaults.

    Raises:
        AttributeError: for a name that is not a setting of celery-events.
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
    AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS: Mapping[str, Any] | None
    AUTO_SQS_MESSAGE_GROUP_ID: bool
    CELERY_TASK_CHECKER: str | None
    CELERY_SETTINGS: str | None
    CELERY_AUTODISCOVER: bool
    EXPORTERS: Any

    def __getattr__(self, name: str) -> Any:
        """Read the Django setting behind ``name`` and keep it until the settings change."""
        try:
            default = DEFAULTS[name]
        except KeyError:
            msg = (
                f"{name!r} is not a celery-events setting; the settings are: {', '.join(DEFAULTS)}"
            )
            raise AttributeError(msg) from None
        value = getattr(django_settings, SETTING_PREFIX + name, default)
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
