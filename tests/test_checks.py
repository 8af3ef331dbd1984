"""System checks: settings misspelled or refused, the lock cache, the project's own checker."""

from __future__ import annotations

import warnings

import pytest
import redis
from celery import current_app
from celery.exceptions import CDeprecationWarning
from django.core.checks import Error, Warning, run_checks
from django.test import override_settings

from celery_events.celery import Celery
from tests.lock_helpers import redis_cache, throwaway_redis, use_cache

#: A unique task of the suite without a stale time limit, on purpose (its calls give one, or fail
#: for the tests that prove it): the warning W003 about it is left out of the other tests.
SUITE_TASK_WITHOUT_STALE_TIME_LIMIT = "tests.tasks.caller_unique_without_stale_time_limit"


def _all_celery_events_messages():
    return [message for message in run_checks() if message.id.startswith("celery_events.")]


def _celery_events_messages():
    return [
        message
        for message in _all_celery_events_messages()
        if (message.id, message.obj) != ("celery_events.W003", SUITE_TASK_WITHOUT_STALE_TIME_LIMIT)
    ]


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


def test_lock_store_on_a_cluster_that_no_node_answers_is_not_reported_by_the_check(settings):
    with throwaway_redis() as (url, process):  # a port that held a Redis, closed once killed
        process.kill()
        process.wait()
        use_cache(
            settings,
            "cluster",
            {**redis_cache(url), "BACKEND": "celery_events.cache.RedisClusterCache"},
        )

        messages = _celery_events_messages()

    assert "celery_events.W001" not in {message.id for message in messages}


@override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="locmem")
def test_lock_store_outside_redis_has_no_eviction_check():
    assert "celery_events.W001" not in {message.id for message in _celery_events_messages()}


@override_settings(
    DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT="abc",
    DJANGO_CELERY_EXTENSIONS_AUTO_SQS_MESSAGE_GROUP_ID="False",
    DJANGO_CELERY_EXTENSIONS_CELERY_TASK_CHECKER="tests.no_such_module.checker",
)
def test_every_refused_value_is_reported_at_once_naming_the_setting_and_the_value():
    messages = _celery_events_messages()

    assert {(type(message), message.id) for message in messages} == {(Error, "celery_events.E002")}
    assert [message.msg for message in messages] == [
        (
            "DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT must be seconds (a number) "
            "or a timedelta, not 'abc'"
        ),
        "DJANGO_CELERY_EXTENSIONS_AUTO_SQS_MESSAGE_GROUP_ID must be True or False, not 'False'",
        (
            "DJANGO_CELERY_EXTENSIONS_CELERY_TASK_CHECKER must be a dotted path that imports, "
            "or None; 'tests.no_such_module.checker' does not: "
            "No module named 'tests.no_such_module'"
        ),
    ]
    assert messages[0].hint == (
        "The section DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT of celery-events' "
        "configuration docs gives the values it takes."
    )


@override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="missing")
def test_cache_name_that_names_no_cache_is_an_error_listing_the_caches():
    assert _celery_events_messages() == [
        Error(
            "DJANGO_CELERY_EXTENSIONS_CACHE_NAME is 'missing', which names no cache in CACHES: "
            "unique locks and ignore windows have no cache to live in",
            hint="Add a cache named 'missing' to CACHES, or name one of its caches: "
            "'default', 'locmem'.",
            id="celery_events.E003",
        )
    ]


@override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="")
def test_refused_cache_name_is_reported_once_by_the_value_check():
    assert [message.id for message in _celery_events_messages()] == ["celery_events.E002"]


UNSHARED_BACKENDS = [
    ("django.core.cache.backends.locmem.LocMemCache", "keeps its keys in the memory of each"),
    ("django.core.cache.backends.dummy.DummyCache", "keeps no key at all"),
    ("django.core.cache.backends.filebased.FileBasedCache", "not atomically"),
]


@pytest.mark.parametrize(("backend", "reason"), UNSHARED_BACKENDS)
def test_lock_cache_that_processes_do_not_share_is_warned_about(
    settings, tmp_path, own_app, backend, reason
):
    own_app.task(name="own.unique", unique=True, stale_time_limit=60)(runs_nothing)
    use_cache(settings, "unshared", {"BACKEND": backend, "LOCATION": str(tmp_path)})

    (message,) = _celery_events_messages()

    assert isinstance(message, Warning)
    assert message.id == "celery_events.W002"
    assert message.msg.startswith(
        f"cache 'unshared' (DJANGO_CELERY_EXTENSIONS_CACHE_NAME) is a {backend}, which "
    )
    assert reason in message.msg
    assert "the unique locks and ignore windows of own.unique do not hold" in message.msg
    assert "django.core.cache.backends.redis.RedisCache" in message.hint


def runs_nothing():
    """The body of the tasks that the tests register on an app of their own."""


@pytest.fixture(name="own_app")
def fixture_own_app():
    """A Celery app of the test's own as the current app, with only the tasks the test adds."""
    previous = current_app._get_current_object()
    app = Celery("own", set_as_current=True)
    with warnings.catch_warnings():
        # Shared tasks of the docs' examples, if a test imported them, bind to the app here;
        # one sets the queue attribute that Celery 5.7 deprecates, on purpose (docs/tasks.md).
        warnings.simplefilter("ignore", CDeprecationWarning)
        app.finalize()
    # Shared tasks (the command tasks) join every app as it is finalized.
    for name in [name for name in app.tasks if not name.startswith("celery.")]:
        app.tasks.unregister(name)
    yield app
    previous.set_current()


@override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="locmem")
def test_unshared_lock_cache_is_fine_when_no_task_locks(own_app):
    own_app.task(name="own.plain")(runs_nothing)

    assert _celery_events_messages() == []


@override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="locmem")
def test_task_with_an_ignore_window_needs_a_shared_lock_cache(own_app):
    own_app.task(name="own.plain")(runs_nothing)
    own_app.task(name="own.ignoring", ignore_task_timedelta=60)(runs_nothing)

    (message,) = _celery_events_messages()

    assert message.id == "celery_events.W002"
    assert "the unique locks and ignore windows of own.ignoring do not hold" in message.msg


@override_settings(DJANGO_CELERY_EXTENSIONS_CACHE_NAME="locmem")
def test_warning_names_three_locking_tasks_and_counts_the_others(own_app):
    for number in range(5):
        own_app.task(name=f"own.unique{number}", unique=True, stale_time_limit=60)(runs_nothing)

    (message,) = _celery_events_messages()

    assert "of own.unique0, own.unique1, own.unique2 and 2 more do not hold" in message.msg


@override_settings(
    DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS={"no_such_command": {}},
    DJANGO_CELERY_EXTENSIONS_AUTO_SQS_MESSAGE_GROUP_ID="yes",
)
def test_command_that_does_not_exist_is_reported_with_the_other_refused_values():
    messages = _celery_events_messages()

    assert [(message.id, message.msg) for message in messages] == [
        (
            "celery_events.E002",
            (
                "DJANGO_CELERY_EXTENSIONS_AUTO_GENERATE_TASKS_DJANGO_COMMANDS names "
                "'no_such_command', which is not a management command of this project"
            ),
        ),
        (
            "celery_events.E002",
            "DJANGO_CELERY_EXTENSIONS_AUTO_SQS_MESSAGE_GROUP_ID must be True or False, not 'yes'",
        ),
    ]


def test_unique_task_of_the_suite_without_stale_time_limit_is_warned_about():
    (message,) = [m for m in _all_celery_events_messages() if m.id == "celery_events.W003"]

    assert message == Warning(
        "unique task without a stale time limit: every call that does not give "
        "stale_time_limit fails with CeleryError",
        hint=(
            "Give the task one (@shared_task(unique=True, stale_time_limit=600)), give one to "
            "every call (apply_async(..., stale_time_limit=600)), or set "
            "DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT."
        ),
        obj=SUITE_TASK_WITHOUT_STALE_TIME_LIMIT,
        id="celery_events.W003",
    )


def test_each_unique_task_without_stale_time_limit_is_warned_about_by_name(own_app):
    own_app.task(name="own.second", unique=True)(runs_nothing)
    own_app.task(name="own.first", unique=True)(runs_nothing)
    own_app.task(name="own.plain")(runs_nothing)

    messages = _all_celery_events_messages()

    assert [(message.id, message.obj) for message in messages] == [
        ("celery_events.W003", "own.first"),
        ("celery_events.W003", "own.second"),
    ]


@pytest.mark.parametrize(
    ("task_options", "setting"),
    [
        ({"stale_time_limit": 60}, None),
        ({}, 60),
        # Derived from the time limit and the time a message may wait in the queue.
        ({"time_limit": 60, "max_queue_waiting_time": 30}, None),
    ],
)
def test_unique_task_with_a_stale_time_limit_from_task_or_settings_is_fine(
    own_app, settings, task_options, setting
):
    settings.DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT = setting
    own_app.task(name="own.unique", unique=True, **task_options)(runs_nothing)

    assert _all_celery_events_messages() == []


@override_settings(DJANGO_CELERY_EXTENSIONS_DEFAULT_TASK_STALE_TIME_LIMIT="soon")
def test_refused_default_stale_time_limit_is_reported_once_by_the_value_check(own_app):
    own_app.task(name="own.unique", unique=True)(runs_nothing)

    assert [message.id for message in _all_celery_events_messages()] == ["celery_events.E002"]


@pytest.fixture(name="celery_instrumented")
def fixture_celery_instrumented():
    """opentelemetry-instrumentation-celery tracing the tests' process while the test runs."""
    instrumentation = pytest.importorskip(
        "opentelemetry.instrumentation.celery", reason="the Celery instrumentation is not installed"
    )
    instrumentor = instrumentation.CeleryInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


@override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS={"opentelemetry": {"link_to_producer": True}})
def test_exporter_linking_beside_an_instrumentor_that_parents_is_reported(celery_instrumented):
    assert _celery_events_messages() == [
        Warning(
            "the opentelemetry exporter's link_to_producer is True, and CeleryInstrumentor "
            "traces this process with use_span_links=False: beside the instrumentor, each "
            "attempt's span is the instrumentor's, made as it says",
            hint=(
                "Give the exporter link_to_producer=False (in "
                "DJANGO_CELERY_EXTENSIONS_EXPORTERS), or instrument Celery with "
                "use_span_links=True."
            ),
            id="celery_events.W004",
        )
    ]


@override_settings(DJANGO_CELERY_EXTENSIONS_EXPORTERS=["opentelemetry"])
def test_exporter_beside_an_instrumentor_of_the_same_shape_is_not_reported(celery_instrumented):
    assert _celery_events_messages() == []
