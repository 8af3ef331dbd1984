"""celery-events used while 'celery_events' is not in INSTALLED_APPS: a check and clear errors."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core.checks import Error
from django.core.checks.registry import registry
from django.core.exceptions import ImproperlyConfigured

from celery_events.celery import Celery
from celery_events.commands import get_django_command_task
from celery_events.installed import check_app_installed

NOT_INSTALLED = (
    r"needs 'celery_events' in INSTALLED_APPS, which lacks it, so Django never starts it: .*"
    r"Add 'celery_events' to INSTALLED_APPS in the project's settings\.$"
)


@pytest.fixture(name="without_the_app")
def fixture_without_the_app(settings):
    """The suite's settings with 'celery_events' left out of INSTALLED_APPS."""
    settings.INSTALLED_APPS = [
        app for app in django_settings.INSTALLED_APPS if app != "celery_events"
    ]


def test_app_left_out_of_installed_apps_is_an_error_of_the_checks(without_the_app):
    # Called alone: the app's own checks, registered in this process, would not be without it.
    assert check_app_installed in registry.get_checks()
    assert check_app_installed(None) == [
        Error(
            "celery-events is used, but 'celery_events' is not in INSTALLED_APPS, so Django "
            "never starts it: the exporters are not connected, the command tasks are not made, "
            "the locks of dropped messages are not released and the system checks do not run",
            hint="Add 'celery_events' to INSTALLED_APPS in the project's settings.",
            id="celery_events.E005",
        )
    ]


def test_installed_app_is_not_reported():
    assert check_app_installed(None) == []


def test_celery_app_refuses_to_give_its_tasks_without_the_app(without_the_app):
    app = Celery("own", set_as_current=False)

    for _ in range(2):  # every use, not only the first
        with pytest.raises(
            ImproperlyConfigured,
            match=r"^Celery app 'own' \(celery_events.celery.Celery\) " + NOT_INSTALLED,
        ):
            app.tasks  # noqa: B018 - what finalizes the app


def test_command_task_is_refused_naming_the_missing_app(without_the_app):
    with pytest.raises(
        ImproperlyConfigured, match=r"^get_django_command_task\('record_call'\) " + NOT_INSTALLED
    ):
        get_django_command_task("record_call")
