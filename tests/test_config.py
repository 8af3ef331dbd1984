"""Settings are read from Django settings on access, by their short names."""

from __future__ import annotations

import pytest
from django.test import override_settings

from celery_events.config import DEFAULTS, settings


def test_default_is_used_when_the_setting_is_absent():
    assert settings.UNIQUE_TASK_KEY_PREFIX == "django-celery-extensions|unique"
    assert settings.CACHE_NAME == "default"


def test_setting_is_read_from_django_settings_by_prefixed_name():
    with override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="locmem"):
        assert settings.CACHE_NAME == "locmem"
    assert settings.CACHE_NAME == "default"


def test_value_read_once_is_kept_until_settings_change():
    settings.LOCK_SLEEP  # noqa: B018 - reads and keeps the value
    assert "LOCK_SLEEP" in vars(settings)

    with override_settings(DJANGO_CELERY_EXTENSIONS_LOCK_SLEEP=7):
        assert "LOCK_SLEEP" not in vars(settings)
        assert settings.LOCK_SLEEP == 7


def test_unknown_name_raises_attribute_error_listing_the_settings():
    with pytest.raises(AttributeError, match=r"'CACHE_NAM' is not a celery-events setting.*"):
        settings.CACHE_NAM  # noqa: B018


def test_every_setting_of_the_design_has_a_default():
    assert set(DEFAULTS) >= {
        "CACHE_NAME",
        "UNIQUE_TASK_KEY_PREFIX",
        "IGNORE_TASK_KEY_PREFIX",
        "BEATER_LOCK_KEY",
        "LOCK_TIMEOUT",
        "LOCK_SLEEP",
        "DEFAULT_TASK_STALE_TIME_LIMIT",
        "DEFAULT_TASK_MAX_QUEUE_WAITING_TIME",
        "AUTO_GENERATE_TASKS_DJANGO_COMMANDS",
        "AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS",
        "AUTO_SQS_MESSAGE_GROUP_ID",
        "CELERY_TASK_CHECKER",
        "CELERY_SETTINGS",
        "CELERY_AUTODISCOVER",
        "EXPORTERS",
    }
