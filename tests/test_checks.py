"""System checks: misspelled settings and the project's own task checker."""

from __future__ import annotations

from django.core.checks import Error, Warning, run_checks
from django.test import override_settings


def _celery_events_messages():
    return [message for message in run_checks() if message.id.startswith("celery_events.")]


def checker_warns_about_add(task_name, task):
    """A CELERY_TASK_CHECKER for the tests: flags one task by name."""
    if task_name == "tests.tasks.add":
        return Warning(f"{task_name} was checked", id="tests.W001")
    return None


def test_no_messages_for_correct_settings():
    assert _celery_events_messages() == []


@override_settings(DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMT=60)
def test_misspelled_setting_is_reported_with_the_likely_name():
    assert _celery_events_messages() == [
        Error(
            "unknown setting DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMT: "
            "celery-events ignores it",
            hint="Did you mean DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT?",
            id="celery_events.E001",
        )
    ]


@override_settings(DJANGO_CELERY_EXTENSIONS_IGNORE_TASK_AFTER_SUCCESS_KEY_PREFIX="x")
def test_renamed_setting_of_django_celery_extensions_points_at_the_new_name():
    (message,) = _celery_events_messages()

    assert message.hint == "Did you mean DJANGO_CELERY_EXTENSIONS_IGNORE_TASK_KEY_PREFIX?"


@override_settings(DJANGO_CELERY_EXTENSIONS_ZZZ=1)
def test_unknown_setting_without_a_close_match_lists_the_settings():
    (message,) = _celery_events_messages()

    assert message.hint.startswith("The settings are: DJANGO_CELERY_EXTENSIONS_CACHE_NAME, ")


@override_settings(
    DJANGO_CELERY_EXTENSIONS_CELERY_TASK_CHECKER="tests.test_checks.checker_warns_about_add"
)
def test_task_checker_messages_are_reported():
    messages = [message for message in run_checks() if message.id == "tests.W001"]

    assert [message.msg for message in messages] == ["tests.tasks.add was checked"]
