"""AppConfig.ready() and the settings it acts on; publish-time settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from celery.signals import before_task_publish
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests import tasks


@pytest.fixture(name="published")
def fixture_published():
    """The message properties of every task published while the test runs."""
    properties = []

    def record(sender, **kwargs):
        properties.append(kwargs["properties"])

    before_task_publish.connect(record, weak=False)
    yield properties
    before_task_publish.disconnect(record)


@override_settings(
    DJANGO_CELERY_EXTENSIONS_CELERY_SETTINGS="tests.celery_app.app",
    DJANGO_CELERY_EXTENSIONS_CELERY_AUTODISCOVER=True,
)
def test_ready_imports_the_celery_app_and_autodiscovers(celery_app):
    apps.get_app_config("celery_events").ready()

    assert "tests.tasks.add" in celery_app.tasks


@override_settings(DJANGO_CELERY_EXTENSIONS_CELERY_SETTINGS="tests.no_such_module.app")
def test_ready_with_a_celery_settings_path_that_does_not_exist_raises_naming_the_setting():
    with pytest.raises(
        ImproperlyConfigured,
        match=r"^DJANGO_CELERY_EXTENSIONS_CELERY_SETTINGS .*'tests\.no_such_module\.app'",
    ):
        apps.get_app_config("celery_events").ready()


@override_settings(DJANGO_CELERY_EXTENSIONS_AUTO_SQS_MESSAGE_GROUP_ID=True)
def test_auto_sqs_message_group_id_is_the_task_id(published):
    result = tasks.caller_plain.apply_async(args=(1,))

    assert published[-1]["MessageGroupId"] == result.task_id


def test_no_message_group_id_by_default(published):
    tasks.caller_plain.apply_async(args=(1,))

    assert "MessageGroupId" not in published[-1]


def test_django_setup_leaves_the_default_celery_app_to_the_project():
    # In a fresh process: Django's setup, then the project's app made after it (as a project
    # does that imports it later than its settings). Celery's Django fix-up makes the first app
    # its default unless one exists; had the setup made Celery's fallback app, any thread but
    # the main one (a threaded web server's) would look the project's tasks up on it.
    script = """
import threading
import django
django.setup()
from celery import Celery, current_app
app = Celery("proj")
seen = []
thread = threading.Thread(target=lambda: seen.append(current_app.main))
thread.start()
thread.join()
print(seen[0])
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "proj"
