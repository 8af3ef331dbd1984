"""Django management commands as Celery tasks."""

from __future__ import annotations

from unittest import mock

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import OperationalError
from django.test import override_settings

from celery_events.commands import generate_command_tasks
from celery_events.task import DjangoTask, get_django_command_task


def test_listed_command_has_a_task_named_for_its_app():
    task = get_django_command_task("record_call")

    assert task.name == "command.tests.testapp.record_call"
    assert isinstance(task, DjangoTask)


def test_command_task_runs_the_command(eager, redis_client):
    get_django_command_task("record_call").apply_async(kwargs={"command_args": ["eager"]})

    assert redis_client.lrange(f"{settings.KEY_PREFIX}record_call", 0, -1) == [b"eager"]
    redis_client.delete(f"{settings.KEY_PREFIX}record_call")


def test_task_options_come_from_the_setting_over_the_defaults():
    with override_settings(
        DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS={
            "clearsessions": {"unique": True, "stale_time_limit": 30},
        },
        DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DEFAULT_CELERY_KWARGS={
            "stale_time_limit": 10,
            "autoretry_for": ["django.db.utils.OperationalError"],
        },
    ):
        (task,) = generate_command_tasks(DjangoTask)

    assert task.name == "command.django.contrib.sessions.clearsessions"
    assert task.unique is True
    assert task.stale_time_limit == 30
    assert task.autoretry_for == (OperationalError,)
    assert get_django_command_task("clearsessions").name == task.name


def test_unknown_command_in_settings_stops_startup_naming_it():
    with (
        override_settings(
            DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS={"no_such_command": {}}
        ),
        pytest.raises(ImproperlyConfigured, match=r"'no_such_command'.*not a management command"),
    ):
        generate_command_tasks(DjangoTask)


def test_command_not_listed_in_settings_has_no_task():
    with pytest.raises(ImproperlyConfigured, match="no task for command 'check'"):
        get_django_command_task("check")


def test_call_keywords_go_to_the_command_over_get_command_kwargs(eager, redis_client):
    task = get_django_command_task("record_call")
    # Command tasks are generated once per process with DjangoTask as their class: a patch
    # stands in for the project's override of the hook.
    with mock.patch.object(task, "get_command_kwargs", return_value={"tag": "-hook"}):
        task.apply_async(kwargs={"command_args": ["a"]})
        task.apply_async(kwargs={"command_args": ["b"], "tag": "-call"})

    records = redis_client.lrange(f"{settings.KEY_PREFIX}record_call", 0, -1)
    redis_client.delete(f"{settings.KEY_PREFIX}record_call")
    assert records == [b"a-hook", b"b-call"]
