"""Settings are read from Django settings on access, by their short names, and validated."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from celery_events.config import DEFAULTS, SETTING_PREFIX, VALIDATORS, settings
from tests import tasks


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


def test_every_setting_has_a_validator():
    assert set(VALIDATORS) == set(DEFAULTS)


@pytest.mark.parametrize("name", DEFAULTS)
def test_every_default_is_accepted_by_its_validator(name):
    VALIDATORS[name](DEFAULTS[name], SETTING_PREFIX + name)


# Each refused value, and the whole message it raises after the prefix of the setting's name.
REFUSED = [
    ("CACHE_NAME", "", "CACHE_NAME must be a non-empty string, not ''"),
    ("CACHE_NAME", None, "CACHE_NAME must be a non-empty string, not None"),
    ("UNIQUE_TASK_KEY_PREFIX", b"x", "UNIQUE_TASK_KEY_PREFIX must be a non-empty string, not b'x'"),
    ("IGNORE_TASK_KEY_PREFIX", "", "IGNORE_TASK_KEY_PREFIX must be a non-empty string, not ''"),
    ("BEATER_LOCK_KEY", 1, "BEATER_LOCK_KEY must be a non-empty string, not 1"),
    ("LOCK_TIMEOUT", "60", "LOCK_TIMEOUT must be seconds (a number) or a timedelta, not '60'"),
    ("LOCK_TIMEOUT", 0, "LOCK_TIMEOUT must be more than 0 seconds, not 0"),
    ("LOCK_SLEEP", None, "LOCK_SLEEP must be seconds (a number) or a timedelta, not None"),
    ("LOCK_SLEEP", -1, "LOCK_SLEEP must be more than 0 seconds, not -1"),
    (
        "DEFAULT_TASK_STALE_TIME_LIMIT",
        "abc",
        "DEFAULT_TASK_STALE_TIME_LIMIT must be seconds (a number) or a timedelta, not 'abc'",
    ),
    (
        "DEFAULT_TASK_STALE_TIME_LIMIT",
        timedelta(0),
        "DEFAULT_TASK_STALE_TIME_LIMIT must be more than 0 seconds, not datetime.timedelta(0)",
    ),
    (
        "DEFAULT_TASK_MAX_QUEUE_WAITING_TIME",
        True,
        "DEFAULT_TASK_MAX_QUEUE_WAITING_TIME must be seconds (a number) or a timedelta, not True",
    ),
    (
        "AUTO_GENERATE_TASKS_DJANGO_COMMANDS",
        ["clearsessions"],
        (
            "AUTO_GENERATE_TASKS_DJANGO_COMMANDS must be a dict of management command name -> task "
            "options (a dict, or None), not ['clearsessions']"
        ),
    ),
    (
        "AUTO_GENERATE_TASKS_DJANGO_COMMANDS",
        None,
        (
            "AUTO_GENERATE_TASKS_DJANGO_COMMANDS must be a dict of management command name -> task "
            "options (a dict, or None), not None"
        ),
    ),
    (
        "AUTO_GENERATE_TASKS_DJANGO_COMMANDS",
        {"clearsessions": ["unique"]},
        (
            "AUTO_GENERATE_TASKS_DJANGO_COMMANDS['clearsessions'] must be a dict of task options, "
            "not ['unique']"
        ),
    ),
    (
        "AUTO_GENERATE_TASKS_DJANGO_COMMANDS",
        {1: {}},
        (
            "AUTO_GENERATE_TASKS_DJANGO_COMMANDS: a management command name must be a non-empty "
            "string, not 1"
        ),
    ),
    (
        "AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS",
        [("unique", True)],
        (
            "AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS must be a dict of task options, "
            "not [('unique', True)]"
        ),
    ),
    (
        "AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS",
        {1: True},
        "AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS: a task option is named by a string, not 1",
    ),
    (
        "AUTO_SQS_MESSAGE_GROUP_ID",
        "False",
        "AUTO_SQS_MESSAGE_GROUP_ID must be True or False, not 'False'",
    ),
    ("CELERY_AUTODISCOVER", 1, "CELERY_AUTODISCOVER must be True or False, not 1"),
    (
        "CELERY_TASK_CHECKER",
        "tests.no_such_module.checker",
        (
            "CELERY_TASK_CHECKER must be a dotted path that imports, or None; "
            "'tests.no_such_module.checker' does not: No module named 'tests.no_such_module'"
        ),
    ),
    (
        "CELERY_SETTINGS",
        "tests.celery_app.no_such_app",
        (
            "CELERY_SETTINGS must be a dotted path that imports, or None; "
            "'tests.celery_app.no_such_app' does not: "
            'Module "tests.celery_app" does not define a "no_such_app" attribute/class'
        ),
    ),
    ("CELERY_SETTINGS", "", "CELERY_SETTINGS must be a non-empty string, not ''"),
    (
        "EXPORTERS",
        "structlog",
        "EXPORTERS must be a list of exporter names or a dict of name -> options, not 'structlog'",
    ),
]


@pytest.mark.parametrize(("name", "value", "message"), REFUSED)
def test_refused_value_raises_improperly_configured_naming_setting_and_value(name, value, message):
    # EXPORTERS raises as the override begins: the app reads it then, to connect the exporters.
    with (
        pytest.raises(ImproperlyConfigured, match=f"^{re.escape(SETTING_PREFIX + message)}$"),
        override_settings(**{SETTING_PREFIX + name: value}),
    ):
        getattr(settings, name)


@override_settings(DJANGO_CELERY_EXTENSIONS_LOCK_TIMEOUT="60")
def test_refused_value_is_not_kept_so_every_read_raises():
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured):
            settings.LOCK_TIMEOUT  # noqa: B018

    assert "LOCK_TIMEOUT" not in vars(settings)


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("LOCK_TIMEOUT", 60, 60.0),
        ("LOCK_TIMEOUT", 2.5, 2.5),
        ("LOCK_SLEEP", timedelta(seconds=5), 5.0),
        ("DEFAULT_TASK_STALE_TIME_LIMIT", None, None),
        ("DEFAULT_TASK_STALE_TIME_LIMIT", timedelta(hours=1), 3600.0),
        ("DEFAULT_TASK_MAX_QUEUE_WAITING_TIME", 20, 20.0),
        ("AUTO_GENERATE_TASKS_DJANGO_COMMANDS", {"clearsessions": None}, {"clearsessions": None}),
        ("AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS", None, {}),
        ("AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS", {"unique": True}, {"unique": True}),
        ("AUTO_SQS_MESSAGE_GROUP_ID", True, True),
        ("CELERY_SETTINGS", "tests.celery_app.app", "tests.celery_app.app"),
        ("CELERY_TASK_CHECKER", None, None),
    ],
)
def test_valid_value_is_read_as_the_library_uses_it(name, value, read):
    with override_settings(**{SETTING_PREFIX + name: value}):
        assert getattr(settings, name) == read


@override_settings(DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS=["clearsessions"])
def test_command_tasks_given_as_a_list_stop_startup_naming_the_setting():
    with pytest.raises(
        ImproperlyConfigured,
        match=r"^DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS must be a dict .*"
        r", not \['clearsessions'\]$",
    ):
        apps.get_app_config("celery_events").ready()


@override_settings(DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT="abc")
def test_bad_default_stale_time_limit_fails_the_first_unique_call_naming_the_setting():
    with pytest.raises(
        ImproperlyConfigured,
        match=r"^DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT .*'abc'$",
    ):
        tasks.caller_unique_without_stale_time_limit.apply_async(args=(1,))
