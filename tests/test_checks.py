"""System checks: misspelled settings, a lock store that evicts, the project's own checker."""

from __future__ import annotations

import pytest
import redis
from django.core.checks import Error, Warning, run_checks
from django.test import override_settings

from tests.lock_helpers import redis_cache, throwaway_redis, use_cache


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


@pytest.fixture(name="lock_store_redis")
def fixture_lock_store_redis(settings):
    """A Redis of the test's own as the lock store's cache; yields a client and the process."""
    with throwaway_redis() as (url, process):
        use_cache(settings, "own-redis", redis_cache(url))
        yield redis.Redis.from_url(url), process


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_lock_store_redis_that_evicts_is_warned_about(lock_store_redis, policy):
    client, _ = lock_store_redis
    client.config_set("maxmemory", "100mb")
    client.config_set("maxmemory-policy", policy)

    (message,) = _celery_events_messages()

    assert message.id == "celery_events.W001"
    assert isinstance(message, Warning)
    assert "'own-redis'" in message.msg
    assert f"maxmemory-policy {policy}" in message.msg
    assert "noeviction" in message.hint


@pytest.mark.parametrize(("maxmemory", "policy"), [("100mb", "noeviction"), ("0", "allkeys-lru")])
def test_lock_store_redis_that_never_evicts_is_fine(lock_store_redis, maxmemory, policy):
    client, _ = lock_store_redis
    client.config_set("maxmemory", maxmemory)
    client.config_set("maxmemory-policy", policy)

    assert _celery_events_messages() == []


def test_lock_store_redis_that_is_down_is_not_reported_by_the_check(lock_store_redis):
    _, process = lock_store_redis
    process.kill()
    process.wait()

    assert _celery_events_messages() == []


@override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="locmem")
def test_lock_store_outside_redis_has_no_eviction_check():
    assert _celery_events_messages() == []
