"""The admin section, through Django's test client: permissions, list, explain and release.

Locks are taken by real calls (``apply_async`` publishes to a queue nothing consumes, on the
tests' Redis) and ignore windows opened by real successes, so that the index entries the admin
reads are the ones the library writes.
"""

from __future__ import annotations

import html
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse

from celery_events.config import settings as celery_events_settings
from celery_events.locks import get_lock_store
from celery_events.locks.redis_store import ENTRY_ARGUMENTS_LIMIT
from tests import tasks
from tests.conftest import wait_for
from tests.lock_helpers import (
    DJANGO_REDIS_PACKAGE_CACHE,
    redis_cache,
    throwaway_redis,
    use_cache,
)
from tests.redis_monitor import monitored
from tests.redis_topologies import CLUSTER_BACKEND
from tests.services import _free_port

if TYPE_CHECKING:
    from django.http import HttpResponse

pytestmark = pytest.mark.django_db

TASK = "tests.tasks.ops_unique_ignored"
BRACED = "tests.tasks.reports.{daily}"
LIST_URL = reverse("admin:celery_events_heldlock_changelist")
EXPLAIN_URL = reverse("admin:celery_events_heldlock_explain")
RELEASE_URL = reverse("admin:celery_events_heldlock_release")
MANY = 20_000


def make_user(django_user_model, *permissions: str):
    """Return a staff user with ``permissions`` of celery_events; the test client logs it in."""
    user = django_user_model.objects.create_user(
        username=f"user-{uuid.uuid4().hex[:8]}", password=None, is_staff=True
    )
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="celery_events", codename__in=permissions)
    )
    return user


def logged_in(user, **client_options: Any) -> Client:
    client = Client(**client_options)
    client.force_login(user)
    return client


@pytest.fixture(name="viewer")
def fixture_viewer(django_user_model) -> Client:
    """Staff who may view the section, not release."""
    return logged_in(make_user(django_user_model, "view_heldlock"))


@pytest.fixture(name="releaser_user")
def fixture_releaser_user(django_user_model):
    return make_user(django_user_model, "view_heldlock", "release_heldlock")


@pytest.fixture(name="releaser")
def fixture_releaser(releaser_user) -> Client:
    """Staff who may view and release."""
    return logged_in(releaser_user)


def call(x: int, task=tasks.ops_unique_ignored, **kwargs: Any) -> str:
    """Take the lock of ``task(x)`` with a real call; return its task id.

    Published to a queue that no worker consumes, so that the lock stays held.
    """
    return str(task.apply_async(args=(x,), kwargs=kwargs, queue="caller-only").id)


def succeed(x: int) -> str:
    """Run ``ops_unique_ignored(x)`` to success, which opens its ignore window; return its id."""
    return str(tasks.ops_unique_ignored.apply(args=(x,)).id)


def text(response: HttpResponse) -> str:
    return html.unescape(response.content.decode())


def tokens(response: HttpResponse) -> list[str]:
    """Return the signed keys a page offers for release."""
    return re.findall(r'name="key" value="([^"]+)"', response.content.decode())


def rows(response: HttpResponse) -> list[str]:
    return re.findall(r'<tr class="held-key">(.*?)</tr>', text(response), flags=re.DOTALL)


def unique_key(x: int) -> str:
    return tasks.ops_unique_ignored.unique_key_generator(
        celery_events_settings.UNIQUE_TASK_KEY_PREFIX, [x], {}
    )


def holder_of(x: int) -> str | None:
    return get_lock_store().holder(unique_key(x))


# Permissions


@pytest.mark.parametrize("url", [LIST_URL, EXPLAIN_URL, RELEASE_URL])
def test_anonymous_users_are_sent_to_the_login_page(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("url", [LIST_URL, EXPLAIN_URL, RELEASE_URL])
def test_staff_without_the_view_permission_are_refused(django_user_model, url):
    client = logged_in(make_user(django_user_model))
    call(1)

    assert client.get(url).status_code == 403
    assert client.post(RELEASE_URL).status_code == 403


def test_the_admin_index_shows_the_section_to_viewers_only(django_user_model, viewer):
    without = logged_in(make_user(django_user_model))

    assert "Held locks and ignore windows" in text(viewer.get(reverse("admin:index")))
    assert "Held locks and ignore windows" not in text(without.get(reverse("admin:index")))


def test_viewers_see_no_release_and_cannot_post_one(viewer, releaser):
    call(1)
    listed = viewer.get(LIST_URL)
    offered = tokens(releaser.get(LIST_URL))

    assert tokens(listed) == []
    assert "Release selected" not in text(listed)
    assert viewer.post(RELEASE_URL, {"key": offered, "confirm": "yes"}).status_code == 403
    assert holder_of(1) is not None


# The list


@pytest.mark.parametrize(
    "backend", ["django.core.cache.backends.redis.RedisCache", DJANGO_REDIS_PACKAGE_CACHE]
)
def test_list_shows_task_arguments_holder_and_time_left(settings, viewer, backend):
    # Under the prefix that the suite's autouse fixture cleans after each test.
    config = redis_cache(django_settings.REDIS_URL, prefix="cache:admin")
    use_cache(settings, "admin", {**config, "BACKEND": backend})
    task_id = call(7, label="weekly")

    response = viewer.get(LIST_URL)

    assert response.status_code == 200
    [row] = rows(response)
    assert TASK in row
    assert "unique lock" in row
    assert '(*[7], **{"label": "weekly"})' in row
    assert task_id in row
    assert re.search(r"<td>(\d+\.\d) s</td>", row)
    assert 0 < float(re.search(r"<td>(\d+\.\d) s</td>", row).group(1)) <= 60


def test_list_shows_the_arguments_of_a_window_a_worker_opened(worker, viewer):
    result = tasks.ops_unique_ignored.apply_async(args=(11,), kwargs={"label": "w"})
    result.get(timeout=30)
    # The worker opens the window in on_success, after it stored the result that get() read.
    wait_for(lambda: rows(viewer.get(LIST_URL)), "the worker to open the ignore window")

    [row] = rows(viewer.get(LIST_URL))

    assert "ignore window" in row
    assert result.id in row
    assert '(*[11], **{"label": "w"})' in row


def test_list_shows_a_call_without_arguments_as_empty_ones_and_explains_it(viewer):
    # Celery hands the call args=None and kwargs=None when none are given.
    task_id = str(tasks.ops_unique_ignored.apply_async(args=(13,), queue="caller-only").id)

    page = viewer.get(LIST_URL)
    [row] = rows(page)
    [link] = re.findall(
        r'<a href="([^"]*explain/\?[^"]*)" title="Explain this call"', page.content.decode()
    )

    assert "(*[13], **{})" in row
    assert f"held by {task_id}" in text(viewer.get(html.unescape(link)))


@pytest.mark.parametrize(
    "kwargs",
    [
        # kombu's JSON carries a datetime; the index's plain JSON does not.
        {"label": datetime(2026, 12, 3, tzinfo=timezone.utc)},
        {"label": "x" * ENTRY_ARGUMENTS_LIMIT},
    ],
    ids=["not-json", "too-long"],
)
def test_list_shows_unknown_arguments_for_keys_without_them_in_the_index(viewer, kwargs):
    task_id = call(1, **kwargs)

    [row] = rows(viewer.get(LIST_URL))

    assert task_id in row
    assert "not in the index" in row


def test_list_filters_by_task_and_by_kind(viewer):
    locked = call(1)
    opened = succeed(2)
    braced = call(3, task=tasks.ops_braced_name)

    by_kind = text(viewer.get(LIST_URL, {"kind": "ignore"}))
    by_task = text(viewer.get(LIST_URL, {"task": BRACED}))
    both = text(viewer.get(LIST_URL, {"task": TASK, "kind": "unique"}))

    assert opened in by_kind
    assert locked not in by_kind
    assert braced not in by_kind
    assert braced in by_task
    assert locked not in by_task
    assert locked in both
    assert opened not in both
    assert braced not in both


def test_list_filter_links_keep_the_other_filters(viewer):
    call(1)

    page = text(viewer.get(LIST_URL, {"kind": "unique", "q": "7"}))
    [task_links] = re.findall(r'<ul id="filter-task">(.*?)</ul>', page, flags=re.DOTALL)

    assert f'href="?task={TASK}&kind=unique&q=7"' in task_links
    assert 'href="?kind=unique&q=7">All</a>' in task_links


def test_list_search_finds_a_holder_id_and_an_argument(viewer):
    first = call(1, label="alpha")
    second = call(2, label="beta")

    by_id = text(viewer.get(LIST_URL, {"q": second}))
    by_argument = text(viewer.get(LIST_URL, {"q": "ALPHA"}))

    assert second in by_id
    assert first not in by_id
    assert first in by_argument
    assert second not in by_argument


def test_list_with_an_unknown_kind_says_so(viewer):
    response = viewer.get(LIST_URL, {"kind": "lock"})

    assert response.status_code == 200
    assert "kind 'lock' is not one of unique, ignore" in text(response)


def test_list_with_a_cursor_it_did_not_give_says_so(viewer):
    response = viewer.get(LIST_URL, {"cursor": "not-a-cursor"})

    assert response.status_code == 200
    assert "cursor 'not-a-cursor' is not a SCAN cursor" in text(response)


def test_list_pages_through_20000_held_keys_with_scan(viewer, redis_client):
    store = get_lock_store()
    held = set()
    for x in range(MANY):
        task_id = f"holder-{x}"
        store.admit(
            task_id=task_id,
            unique_key=unique_key(x),
            lock_ttl=120,
            ignore_key=None,
            task_name=TASK,
            arguments=([x], {}),
        )
        held.add(task_id)

    listed: list[str] = []
    sizes = []
    url: str | None = LIST_URL
    with monitored(django_settings.REDIS_URL) as commands:
        first = viewer.get(url)
    while url is not None:
        page = text(viewer.get(url))
        found = re.findall(r"<td>(holder-\d+)</td>", page)
        listed += found
        sizes.append(len(found))
        following = re.search(r'<a href="(\?[^"]*)" id="next-page"', page)
        url = LIST_URL + following.group(1) if following else None

    assert first.status_code == 200
    assert "SCAN" in commands.sent
    assert "KEYS" not in commands.sent
    assert sorted(listed) == sorted(held)  # each key once, none missed
    assert len(sizes) > 1
    assert max(sizes) < 4 * 100  # a page is about list_per_page keys, never all of them


# Explain


def test_explain_names_the_holder_and_the_next_call(viewer):
    task_id = call(4)

    page = text(viewer.get(EXPLAIN_URL, {"task": TASK, "args": "[4]", "kwargs": "{}"}))

    assert f"held by {task_id}" in page
    assert f"return the holder's result ({task_id}); nothing is published" in page
    assert "Ignore window</th><td>closed" in page


def test_explain_an_open_window_says_the_call_is_ignored(viewer):
    opened = succeed(5)

    page = text(viewer.get(EXPLAIN_URL, {"task": TASK, "args": "[5]"}))

    assert f"opened by {opened}" in page
    assert "be ignored (IgnoredResult); nothing is published" in page


def test_explain_links_from_the_list_carry_the_call(viewer):
    task_id = call(6, label="x")

    page = viewer.get(LIST_URL).content.decode()
    [link] = re.findall(r'<a href="([^"]*explain/\?[^"]*)" title="Explain this call"', page)
    explained = text(viewer.get(html.unescape(link)))

    assert f"held by {task_id}" in explained


@pytest.mark.django_db(transaction=True)  # the thread's own connection sees the user committed
def test_explain_in_a_thread_of_its_own_finds_the_projects_task(viewer):
    # As in a threaded web server: Celery's current app is a thread's own, and a new thread's
    # is Celery's fallback app, which knows none of the project's tasks.
    task_id = call(12)
    pages: list[str] = []

    def request() -> None:
        try:
            pages.append(text(viewer.get(EXPLAIN_URL, {"task": TASK, "args": "[12]"})))
            pages.append(text(viewer.get(LIST_URL)))
        finally:
            connection.close()  # the thread's own, which would keep the test database in use

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()

    explained, listed = pages
    assert f"held by {task_id}" in explained
    assert f'href="?task={TASK}"' in listed  # the task filter offers the project's tasks


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"task": TASK, "args": "[1"}, "args '[1' is not JSON"),
        ({"task": TASK, "kwargs": "[1]"}, "kwargs '[1]' is not a JSON object"),
        ({"task": "tests.tasks.nope"}, "unknown task 'tests.tasks.nope'"),
        ({"task": "tests.tasks.add"}, "is neither unique nor ignore-configured"),
    ],
)
def test_explain_bad_input_is_named(viewer, query, message):
    response = viewer.get(EXPLAIN_URL, query)

    assert response.status_code == 200
    assert message in text(response)


def test_explain_on_a_cache_that_is_not_redis_works(settings, viewer):
    use_cache(settings, "locmem", django_settings.CACHES["locmem"])
    task_id = call(8)

    page = text(viewer.get(EXPLAIN_URL, {"task": TASK, "args": "[8]"}))

    assert f"held by {task_id}" in page


def test_explain_offers_release_only_to_releasers(viewer, releaser):
    call(9)
    query = {"task": TASK, "args": "[9]"}

    assert tokens(viewer.get(EXPLAIN_URL, query)) == []
    assert len(tokens(releaser.get(EXPLAIN_URL, query))) == 1


# Release


def test_release_asks_for_confirmation_then_releases_and_logs(releaser, releaser_user):
    task_id = call(1)
    [token] = tokens(releaser.get(LIST_URL))

    asked = releaser.post(RELEASE_URL, {"key": [token]})

    assert asked.status_code == 200
    assert "Yes, release" in text(asked)
    assert task_id in text(asked)
    assert holder_of(1) == task_id  # nothing released before the confirmation

    done = releaser.post(RELEASE_URL, {"key": [token], "confirm": "yes"}, follow=True)

    assert holder_of(1) is None
    assert "Released unique lock" in text(done)
    [entry] = LogEntry.objects.filter(user=releaser_user)
    assert entry.action_flag == DELETION
    assert entry.object_id == unique_key(1)
    assert entry.object_repr == f"unique lock of {TASK}"
    assert task_id in entry.change_message
    assert entry.content_type.model == "heldlock"


def test_release_from_explain_releases_the_lock_and_the_window(releaser):
    opened = succeed(2)
    # Not ignored (the per-call option), so it takes the lock beside the open window.
    tasks.ops_unique_ignored.apply_async(
        args=(2,), ignore_task_after_success=False, queue="caller-only"
    )
    page = releaser.get(EXPLAIN_URL, {"task": TASK, "args": "[2]"})

    releaser.post(RELEASE_URL, {"key": tokens(page), "confirm": "yes"})

    assert holder_of(2) is None
    again = text(releaser.get(EXPLAIN_URL, {"task": TASK, "args": "[2]"}))
    assert f"opened by {opened}" not in again
    assert "trigger: publish a new task" in again


def test_release_keeps_a_lock_taken_by_another_call_since(releaser, releaser_user):
    first = call(3)
    [token] = tokens(releaser.get(LIST_URL))
    releaser.post(RELEASE_URL, {"key": [token], "confirm": "yes"})
    second = call(3)  # the lock is free again, and a new call takes it

    done = releaser.post(RELEASE_URL, {"key": [token], "confirm": "yes"}, follow=True)

    assert holder_of(3) == second
    assert f"it no longer holds {first}" in text(done)
    assert LogEntry.objects.filter(user=releaser_user).count() == 1  # the first release only


def test_release_refuses_a_key_it_did_not_sign(releaser):
    call(4)

    response = releaser.post(RELEASE_URL, {"key": ["forged:token"], "confirm": "yes"})

    assert response.status_code == 400
    assert holder_of(4) is not None


def test_release_without_the_csrf_token_is_refused(releaser_user):
    client = logged_in(releaser_user, enforce_csrf_checks=True)
    call(5)
    [token] = tokens(client.get(LIST_URL))

    response = client.post(RELEASE_URL, {"key": [token], "confirm": "yes"})

    assert response.status_code == 403
    assert holder_of(5) is not None


def test_release_with_no_key_selected_says_so(releaser):
    done = releaser.post(RELEASE_URL, {}, follow=True)

    assert "Select the keys to release." in text(done)


# Caches that cannot list, and a Redis that cannot be reached


def test_list_on_a_cache_that_cannot_enumerate_says_so(settings, viewer):
    use_cache(settings, "locmem", django_settings.CACHES["locmem"])

    response = viewer.get(LIST_URL)

    assert response.status_code == 200
    assert "Cache 'locmem' is not a Redis cache: it cannot enumerate its keys" in text(response)


@pytest.fixture(name="redis_down")
def fixture_redis_down(settings):
    """Point the lock store at a Redis that nothing listens for."""
    url = f"redis://127.0.0.1:{_free_port()}/0"
    use_cache(settings, "down", redis_cache(url, socket_connect_timeout=0.5))


def test_list_with_redis_down_says_so(viewer, redis_down):
    response = viewer.get(LIST_URL)

    assert response.status_code == 200
    assert "cache 'down' could not list the keys of 'every task': Redis is unreachable" in text(
        response
    )


def test_list_with_a_redis_cluster_down_says_so(settings, viewer):
    # Nothing listens on port 1: the cluster client cannot even ask for the slot map.
    use_cache(
        settings, "no-cluster", {"BACKEND": CLUSTER_BACKEND, "LOCATION": "redis://127.0.0.1:1"}
    )

    response = viewer.get(LIST_URL)

    assert response.status_code == 200
    assert "cache 'no-cluster' could not make its client: Redis is unreachable" in text(response)


@pytest.mark.parametrize("url", [LIST_URL, f"{EXPLAIN_URL}?task={TASK}"])
def test_pages_with_a_cache_name_naming_no_cache_say_so(settings, viewer, url):
    settings.DJANGO_CELERY_EXTENSIONS_CACHE_NAME = "missing"

    response = viewer.get(url)

    assert response.status_code == 200
    assert "CACHE_NAME is 'missing', which names no cache of CACHES" in text(response)


def test_explain_with_redis_down_says_so(viewer, redis_down):
    response = viewer.get(EXPLAIN_URL, {"task": TASK, "args": "[1]"})

    assert response.status_code == 200
    assert "Redis is unreachable" in text(response)


def test_release_with_redis_down_says_nothing_was_released(settings, releaser):
    call(6)
    [token] = tokens(releaser.get(LIST_URL))
    use_cache(settings, "down", redis_cache(f"redis://127.0.0.1:{_free_port()}/0"))

    done = releaser.post(RELEASE_URL, {"key": [token], "confirm": "yes"}, follow=True)

    assert done.status_code == 200
    assert "Nothing was released: cache 'down' could not release" in text(done)
    assert LogEntry.objects.count() == 0


# The connection to Redis


@pytest.mark.django_db(transaction=True)  # the threads' own connections see the user committed
def test_requests_in_threads_of_their_own_share_the_lock_stores_connections(settings, viewer):
    # As under runserver, which starts a thread per request: Django gives each thread a cache
    # object of its own, whose client would open a connection pool, and a connection, of its own.
    with throwaway_redis() as (url, _):
        use_cache(settings, "own", redis_cache(url))
        call(1)
        counter = redis.Redis.from_url(url)
        before = counter.info("stats")["total_connections_received"]

        for _ in range(5):
            thread = threading.Thread(target=lambda: (viewer.get(LIST_URL), connection.close()))
            thread.start()
            thread.join()

        opened = counter.info("stats")["total_connections_received"] - before
        counter.close()
    assert opened <= 1  # the pool's one more, at most; not one per request
