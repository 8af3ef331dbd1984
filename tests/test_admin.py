"""The admin section, through Django's test client: permissions, list, explain and release.

Locks are taken by real calls (``apply_async`` publishes to a queue nothing consumes, on the
tests' Redis) and ignore windows opened by real successes, so that the index entries the admin
reads are the ones the library writes. Misuse is tried as issue 21 tried it: bad input, values
and index entries planted in the cache's Redis, tokens replayed, expired or read.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import urllib.parse
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.urls import reverse

from celery_events.admin import HeldLockAdmin
from celery_events.config import settings as celery_events_settings
from celery_events.locks import get_lock_store
from celery_events.locks.index import ENTRY_ARGUMENTS_LIMIT
from celery_events.models import HeldLock
from tests import tasks
from tests.conftest import wait_for
from tests.lock_helpers import (
    DJANGO_REDIS_PACKAGE_CACHE,
    planted_pickle,
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
    """Staff who may view the section, not the calls' arguments, not release."""
    return logged_in(make_user(django_user_model, "view_heldlock"))


@pytest.fixture(name="reader")
def fixture_reader(django_user_model, keep_arguments) -> Client:
    """Staff who may view the section and the calls' arguments, which the index keeps."""
    return logged_in(make_user(django_user_model, "view_heldlock", "view_heldlock_arguments"))


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


def bad_rows(response: HttpResponse) -> list[str]:
    return re.findall(r'<tr class="bad-entry">(.*?)</tr>', text(response), flags=re.DOTALL)


def explain_link(response: HttpResponse) -> str:
    """Return the address of the Explain link of the one row of a list page."""
    [link] = re.findall(
        r'<a href="([^"]*explain/\?[^"]*)" title="Explain this call"', response.content.decode()
    )
    return html.unescape(link)


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
def test_list_shows_task_arguments_holder_and_time_left(settings, reader, backend):
    # Under the prefix that the suite's autouse fixture cleans after each test.
    config = redis_cache(django_settings.REDIS_URL, prefix="cache:admin")
    use_cache(settings, "admin", {**config, "BACKEND": backend})
    task_id = call(7, label="weekly")

    response = reader.get(LIST_URL)

    assert response.status_code == 200
    [row] = rows(response)
    assert TASK in row
    assert "unique lock" in row
    assert '(*[7], **{"label": "weekly"})' in row
    assert task_id in row
    assert re.search(r"<td>(\d+\.\d) s</td>", row)
    assert 0 < float(re.search(r"<td>(\d+\.\d) s</td>", row).group(1)) <= 60


def test_list_shows_the_shape_of_the_arguments_of_a_window_a_worker_opened(worker, viewer):
    result = tasks.ops_unique_ignored.apply_async(args=(11,), kwargs={"label": "w"})
    result.get(timeout=30)
    # The worker opens the window in on_success, after it stored the result that get() read.
    wait_for(lambda: rows(viewer.get(LIST_URL)), "the worker to open the ignore window")

    [row] = rows(viewer.get(LIST_URL))

    assert "ignore window" in row
    assert result.id in row
    assert "(int, label=str)" in row  # the worker redacts them, as the default setting says


def test_list_shows_a_call_without_arguments_as_empty_ones_and_explains_it(reader):
    # Celery hands the call args=None and kwargs=None when none are given.
    task_id = str(tasks.ops_unique_ignored.apply_async(args=(13,), queue="caller-only").id)

    page = reader.get(LIST_URL)
    [row] = rows(page)

    assert "(*[13], **{})" in row
    assert f"held by {task_id}" in text(reader.get(explain_link(page)))


@pytest.mark.parametrize(
    "kwargs",
    [
        # kombu's JSON carries a datetime; the index's plain JSON does not.
        {"label": datetime(2026, 12, 3, tzinfo=timezone.utc)},
        {"label": "x" * ENTRY_ARGUMENTS_LIMIT},
    ],
    ids=["not-json", "too-long"],
)
def test_list_shows_the_shape_of_arguments_the_index_cannot_keep(reader, kwargs):
    task_id = call(1, **kwargs)

    [row] = rows(reader.get(LIST_URL))

    assert task_id in row
    assert f"(int, label={type(kwargs['label']).__name__})" in row


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


def test_list_search_finds_a_holder_id_and_an_argument(reader):
    first = call(1, label="alpha")
    second = call(2, label="beta")

    by_id = text(reader.get(LIST_URL, {"q": second}))
    by_argument = text(reader.get(LIST_URL, {"q": "ALPHA"}))

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


def test_list_shows_long_arguments_once_per_row(django_user_model, keep_arguments):
    # Each row's arguments were also in its Explain link and, base64, in its release token.
    everything = logged_in(
        make_user(django_user_model, "view_heldlock", "view_heldlock_arguments", "release_heldlock")
    )
    label = "x" * 1700  # the entry, with its other fields, stays within ENTRY_ARGUMENTS_LIMIT
    for x in range(10):
        call(x, label="short")
    short = len(everything.get(LIST_URL).content)
    for x in range(10, 20):
        call(x, label=label)

    per_row = (len(everything.get(LIST_URL).content) - short) / 10

    assert per_row < 2 * len(label)  # the arguments once, and the row's own markup


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

    page = text(viewer.post(EXPLAIN_URL, {"task": TASK, "args": "[4]", "kwargs": "{}"}))

    assert f"held by {task_id}" in page
    assert f"return the holder's result ({task_id}); nothing is published" in page
    assert "Ignore window</th><td>closed" in page


def test_explain_an_open_window_says_the_call_is_ignored(viewer):
    opened = succeed(5)

    page = text(viewer.post(EXPLAIN_URL, {"task": TASK, "args": "[5]"}))

    assert f"opened by {opened}" in page
    assert "be ignored (IgnoredResult); nothing is published" in page


def test_explain_links_from_the_list_name_the_entry_not_the_arguments(reader):
    task_id = call(6, label="ada@example.com")

    link = explain_link(reader.get(LIST_URL))
    explained = reader.get(link)

    assert "ada@example.com" not in link
    assert "args" not in urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert f"held by {task_id}" in text(explained)
    assert 'value="{&quot;label&quot;: &quot;ada@example.com&quot;}"' in explained.content.decode()


def test_explain_from_the_list_hides_the_arguments_from_viewers_without_the_permission(
    viewer, keep_arguments
):
    task_id = call(6, label="ada@example.com")

    explained = viewer.get(explain_link(viewer.get(LIST_URL)))

    assert f"held by {task_id}" in text(explained)  # explained with the entry's arguments
    assert "ada@example.com" not in text(explained)
    assert "you may not view the calls' arguments" in text(explained)


def test_explain_from_the_list_without_arguments_in_the_index_shows_the_key_and_asks_for_them(
    viewer,
):
    task_id = call(6, label="ada@example.com")

    explained = text(viewer.get(explain_link(viewer.get(LIST_URL))))

    assert f"held by {task_id}" in explained
    assert "(int, label=str)" in explained
    assert "The index keeps no arguments of this call" in explained
    assert "ada@example.com" not in explained


def test_explain_refuses_arguments_in_its_address(viewer):
    call(6)

    page = text(viewer.get(EXPLAIN_URL, {"task": TASK, "args": "[6]"}))

    assert (
        "Arguments are taken from the form, which is posted, never from the page's address" in page
    )
    assert 'id="explanation"' not in page


def test_explain_of_an_entry_that_is_gone_says_so(viewer):
    call(6)
    link = explain_link(viewer.get(LIST_URL))
    get_lock_store().release(
        task_id=holder_of(6), unique_key=unique_key(6), ignore_key=None, ignore_ttl=None
    )

    assert "This key is no longer held" in text(viewer.get(link))


@pytest.mark.django_db(transaction=True)  # the thread's own connection sees the user committed
def test_explain_in_a_thread_of_its_own_finds_the_projects_task(viewer):
    # As in a threaded web server: Celery's current app is a thread's own, and a new thread's
    # is Celery's fallback app, which knows none of the project's tasks.
    task_id = call(12)
    pages: list[str] = []

    def request() -> None:
        try:
            pages.append(text(viewer.post(EXPLAIN_URL, {"task": TASK, "args": "[12]"})))
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
    response = viewer.post(EXPLAIN_URL, query)

    assert response.status_code == 200
    assert message in text(response)


def test_explain_on_a_cache_that_is_not_redis_works(settings, viewer):
    use_cache(settings, "locmem", django_settings.CACHES["locmem"])
    task_id = call(8)

    page = text(viewer.post(EXPLAIN_URL, {"task": TASK, "args": "[8]"}))

    assert f"held by {task_id}" in page


def test_explain_offers_release_only_to_releasers(viewer, releaser):
    call(9)
    query = {"task": TASK, "args": "[9]"}

    assert tokens(viewer.post(EXPLAIN_URL, query)) == []
    assert len(tokens(releaser.post(EXPLAIN_URL, query))) == 1


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
    page = releaser.post(EXPLAIN_URL, {"task": TASK, "args": "[2]"})

    releaser.post(RELEASE_URL, {"key": tokens(page), "confirm": "yes"})

    assert holder_of(2) is None
    again = text(releaser.post(EXPLAIN_URL, {"task": TASK, "args": "[2]"}))
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


@pytest.mark.parametrize("method", ["get", "post"])
def test_pages_with_a_cache_name_naming_no_cache_say_so(settings, viewer, method):
    settings.DJANGO_CELERY_EXTENSIONS_CACHE_NAME = "missing"

    url = LIST_URL if method == "get" else EXPLAIN_URL
    response = getattr(viewer, method)(url, {"task": TASK} if method == "post" else {})

    assert response.status_code == 200
    assert "CACHE_NAME is 'missing', which names no cache of CACHES" in text(response)


def test_explain_with_redis_down_says_so(viewer, redis_down):
    response = viewer.post(EXPLAIN_URL, {"task": TASK, "args": "[1]"})

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


# Misuse, as issue 21 tried it


@pytest.fixture(name="other_releaser")
def fixture_other_releaser(django_user_model) -> Client:
    """Another member of staff who may view and release."""
    return logged_in(make_user(django_user_model, "view_heldlock", "release_heldlock"))


def token_fields(token: str) -> Any:
    """Return what a release token holds, read as anyone who has it can read it."""
    payload = token.split(":", maxsplit=1)[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_list_shows_viewers_the_shape_of_the_arguments_not_their_values(viewer, keep_arguments):
    call(1, label="ada@example.com")

    page = viewer.get(LIST_URL)
    searched = viewer.get(LIST_URL, {"q": "ada@example"})

    [row] = rows(page)
    assert "(int, label=str)" in row
    assert "ada@example.com" not in text(page)
    assert rows(searched) == []  # the search is no oracle of the arguments either


def test_release_tokens_and_the_confirmation_page_carry_no_arguments(reader, releaser):
    call(1, label="ada@example.com")
    [token] = tokens(releaser.get(LIST_URL))

    asked = releaser.post(RELEASE_URL, {"key": [token]})

    assert "ada@example.com" not in json.dumps(token_fields(token))
    assert "ada@example.com" not in text(asked)
    assert "ada@example.com" in text(reader.get(LIST_URL))  # the index kept them


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"args": "[" + "9" * 5000 + "]"}, "has an integer longer than Python's limit of digits"),
        ({"args": "[" * 100_000 + "]" * 100_000}, "is nested deeper than 100 levels"),
        ({"kwargs": '{"a": ' * 150 + "1" + "}" * 150}, "is nested deeper than 100 levels"),
    ],
    ids=["int-digit-limit", "recursion", "deep"],
)
def test_explain_with_arguments_it_cannot_read_names_them(viewer, query, message):
    response = viewer.post(EXPLAIN_URL, {"task": TASK, **query})

    assert response.status_code == 200
    [error] = re.findall(r'<p class="errornote" id="explain-error">(.*?)</p>', text(response))
    assert message in error
    assert len(error) < 300  # the input is named, not repeated whole


@pytest.mark.parametrize(
    "cursor",
    ["9" * 5000, str(2**64), "-1", "1_000", "\uff11", "12 "],
    ids=["int-digit-limit", "past-64-bits", "negative", "underscore", "fullwidth-digit", "space"],
)
def test_list_with_a_cursor_redis_would_refuse_says_so(viewer, cursor):
    response = viewer.get(LIST_URL, {"cursor": cursor})

    assert response.status_code == 200
    assert "is not a SCAN cursor" in text(response)


@pytest.mark.parametrize(
    "query",
    [
        {"task": TASK, "kind": "lock", "key": "k"},
        {"task": TASK, "kind": "unique", "key": ""},
        {"kind": "unique", "key": "k"},
    ],
    ids=["kind", "key", "task"],
)
def test_explain_of_an_entry_the_list_does_not_link_to_says_so(viewer, query):
    response = viewer.get(EXPLAIN_URL, query)

    assert response.status_code == 200
    assert "is not one the list links to" in text(response)


def test_a_lock_value_planted_as_a_pickle_is_shown_as_bad_and_never_unpickled(
    viewer, redis_client, tmp_path
):
    ran = tmp_path / "ran"
    call(1)
    good = call(2)
    redis_key = get_lock_store().binding.key(unique_key(1))
    redis_client.set(redis_key, planted_pickle(ran), keepttl=True)

    page = viewer.get(LIST_URL)
    explained = text(viewer.post(EXPLAIN_URL, {"task": TASK, "args": "[1]"}))

    assert not ran.exists()
    [row] = rows(page)
    assert good in row
    [bad] = bad_rows(page)
    assert "are not a task id" in bad
    assert f"key {unique_key(1)!r} of cache 'default' holds" in explained
    assert not ran.exists()


def test_an_entry_planted_to_name_another_cache_key_is_refused(viewer, releaser, redis_client):
    cache = caches["default"]
    cache.set("feature-flag", "on")
    good = call(1)
    planted = {"task": TASK, "kind": "unique", "key": "feature-flag", "beside": None, "id": "x"}
    store = get_lock_store()
    redis_client.set(
        store._entry_key(TASK, "unique", "feature-flag", "feature-flag"), json.dumps(planted)
    )

    page = viewer.get(LIST_URL)
    offered = tokens(releaser.get(LIST_URL))

    [row] = rows(page)
    assert good in row
    [bad] = bad_rows(page)
    assert "not signed with this project's SECRET_KEY" in bad
    assert len(offered) == 1
    releaser.post(RELEASE_URL, {"key": offered, "confirm": "yes"})
    assert cache.get("feature-flag") == "on"
    # Nor does the Explain link of such an entry show the key's value, or offer its release.
    reference = {"task": TASK, "kind": "unique", "key": "feature-flag"}
    explained = releaser.get(EXPLAIN_URL, reference)
    assert "is bad: not signed with this project's SECRET_KEY" in text(explained)
    assert tokens(explained) == []


@pytest.mark.parametrize(
    "value",
    [b"{not json", json.dumps({"task": TASK}).encode(), b"\x80\x04K\x01."],
    ids=["not-json", "missing-fields", "pickle"],
)
def test_a_bad_entry_is_shown_as_bad_while_the_good_ones_still_list(viewer, redis_client, value):
    good = call(1)
    store = get_lock_store()
    redis_client.set(store._entry_key(TASK, "unique", "planted", "planted"), value)

    page = viewer.get(LIST_URL)

    assert page.status_code == 200
    [row] = rows(page)
    assert good in row
    assert len(bad_rows(page)) == 1


@pytest.fixture(name="release_only")
def fixture_release_only(django_user_model) -> Client:
    """Staff who may release, not view."""
    return logged_in(make_user(django_user_model, "release_heldlock"))


@pytest.mark.parametrize(
    ("poster", "status"),
    [("release_only", 403), ("other_releaser", 400)],
    ids=["without-the-view-permission", "a-token-made-for-another-user"],
)
def test_release_posted_by_staff_the_token_was_not_made_for_releases_nothing(
    request, releaser, poster, status
):
    call(1)
    [token] = tokens(releaser.get(LIST_URL))

    response = request.getfixturevalue(poster).post(RELEASE_URL, {"key": [token], "confirm": "yes"})

    assert response.status_code == status
    assert holder_of(1) is not None


def test_release_token_older_than_its_max_age_releases_nothing(releaser, monkeypatch):
    call(1)
    [token] = tokens(releaser.get(LIST_URL))
    # Every token is older than -1 seconds: as a token offered 15 minutes ago is older than 900.
    monkeypatch.setattr(HeldLockAdmin, "release_token_max_age", -1)

    done = releaser.post(RELEASE_URL, {"key": [token], "confirm": "yes"}, follow=True)

    assert "Nothing was released: the keys were offered more than" in text(done)
    assert holder_of(1) is not None


def test_view_on_site_url_of_a_held_lock_is_not_found(viewer):
    content_type = ContentType.objects.get_for_model(HeldLock, for_concrete_model=False)

    response = viewer.get(reverse("admin:view_on_site", args=(content_type.pk, "x")))

    assert response.status_code == 404


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
