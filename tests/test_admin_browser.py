"""The admin section in a real browser: headless Chromium driven by selenium, on a live server.

Each test logs in through the admin's login form and then clicks, types and submits as a user
does. Locks are taken by real calls and ignore windows opened by real successes, as in
tests/test_admin.py. Each test saves a screenshot of the page it ends on, as an artifact of the
run, under ``$CELERY_EVENTS_ARTIFACTS/screenshots`` (``build/artifacts/screenshots`` by default):
``<test name>.png``, and ``<test name>-<step>.png`` for a page met on the way.

Chromium and its driver are the Debian packages ``chromium`` and ``chromium-driver``. Without
them the tests are skipped, unless ``CELERY_EVENTS_REQUIRE_BROWSER=1`` (as CI sets it) makes
that a failure. ``make screenshots`` also copies the pictures the docs show into docs/_static.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from celery_events.config import settings as celery_events_settings
from celery_events.locks import get_lock_store
from tests import tasks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from selenium.webdriver.remote.webelement import WebElement

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("CELERY_EVENTS_ARTIFACTS", REPO / "build" / "artifacts"))
SCREENSHOTS /= "screenshots"
# `make screenshots` sets it to docs/_static, so that the docs show what these tests see.
DOCS_SCREENSHOTS = os.environ.get("CELERY_EVENTS_DOCS_SCREENSHOTS")
REQUIRE_BROWSER = os.environ.get("CELERY_EVENTS_REQUIRE_BROWSER") == "1"
WINDOW = (1280, 900)
# Bounds each wait for a page or an element, so that a broken page fails the test instead of
# hanging it; nothing is asserted about how long a page takes.
WAIT = 30

TASK = "tests.tasks.ops_unique_ignored"
BRACED = "tests.tasks.reports.{daily}"
LIST_URL = reverse("admin:celery_events_heldlock_changelist")
PASSWORD = "a-password-for-the-browser-tests"  # noqa: S105 - a throwaway user of the tests


def call(x: int, task=tasks.ops_unique_ignored, **kwargs: Any) -> str:
    """Take the lock of ``task(x)`` with a real call; return its task id.

    The queue is named, not routed: the routes send tests.tasks.* to the queue of the session's
    worker, which would run the call and release its lock if an earlier test started it.
    """
    return str(task.apply_async(args=(x,), kwargs=kwargs, queue="caller-only").id)


def succeed(x: int) -> str:
    """Run ``ops_unique_ignored(x)`` to success, which opens its ignore window; return its id."""
    return str(tasks.ops_unique_ignored.apply(args=(x,)).id)


def holder_of(x: int, **kwargs: Any) -> str | None:
    """Return the holder of the lock of ``ops_unique_ignored(x, **kwargs)``, as Redis has it."""
    key = tasks.ops_unique_ignored.unique_key_generator(
        celery_events_settings.UNIQUE_TASK_KEY_PREFIX, [x], kwargs
    )
    return get_lock_store().holder(key)


# The browser


@pytest.fixture(name="browser", scope="session")
def fixture_browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium, through the system's chromedriver; one for the session."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        found = {"chromium": chromium, "chromedriver": chromedriver}
        missing = " and ".join(name for name, path in found.items() if path is None)
        reason = (
            f"no {missing} on the PATH: the browser tests need the Debian packages "
            "chromium and chromium-driver"
        )
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason} (CELERY_EVENTS_REQUIRE_BROWSER=1 requires them)")
        pytest.skip(reason)
    options = Options()
    options.binary_location = chromium
    options.add_argument("--headless=new")
    # Chromium will not start its sandbox as root, nor in containers that lack user namespaces;
    # it only ever opens the tests' own pages.
    options.add_argument("--no-sandbox")
    # Docker gives /dev/shm 64 MB, which Chromium outgrows and then crashes tabs.
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    # The given driver keeps selenium from looking one up (Selenium Manager goes online).
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(name="screenshot")
def fixture_screenshot(browser, request) -> Iterator[Callable[..., Path]]:
    """Return ``save(step=None, docs=None)``, which saves a screenshot of the page.

    ``step`` names a page met on the way; without it the picture is the test's own. ``docs``
    is the file name under which ``make screenshots`` copies it into docs/_static. A test that
    saved no picture of its own (one that failed, say) gets one of where it stopped.
    """
    saved: list[Path] = []

    def save(step: str | None = None, docs: str | None = None) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}{f'-{step}' if step else ''}.png"
        if not browser.save_screenshot(str(path)):
            pytest.fail(f"could not save a screenshot to {path}")
        # Read by the terminal summary (tests/conftest.py) and written to JUnit XML reports.
        request.node.user_properties.append(("screenshot", str(path)))
        if DOCS_SCREENSHOTS and docs:
            shutil.copyfile(path, Path(DOCS_SCREENSHOTS) / docs)
        saved.append(path)
        return path

    yield save
    if not any(path.stem == request.node.name for path in saved):
        save()


@pytest.fixture(name="staff")
def fixture_staff(django_user_model, settings):
    """Staff (not a superuser) who may view, see arguments and release; with a password."""
    # The default hasher's iterations cost most of a second per test (hashed, then checked at
    # log-in), for a throwaway password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = django_user_model.objects.create_user(username="staff", password=PASSWORD, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="celery_events",
            codename__in=["view_heldlock", "view_heldlock_arguments", "release_heldlock"],
        )
    )
    return user


@pytest.fixture(name="page")
def fixture_page(browser, live_server, screenshot) -> webdriver.Chrome:
    """The browser, logged out, with a screenshot taken after the test (see ``screenshot``)."""
    # Every host's cookies, whatever page is open: the session is shared by the tests.
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.get("about:blank")
    return browser


@pytest.fixture(name="admin")
def fixture_admin(page, live_server, staff) -> webdriver.Chrome:
    """The browser, logged in as ``staff`` through the login form, on the held keys' list."""
    log_in(page, live_server.url, staff.username)
    return page


def log_in(driver: webdriver.Chrome, server: str, username: str) -> None:
    """Open the list, which sends to the login form, and log in; land on the list."""
    driver.get(server + LIST_URL)
    element(driver, "#login-form #id_username").send_keys(username)
    element(driver, "#login-form #id_password").send_keys(PASSWORD)
    # The section's tables need the width that the admin's navigation sidebar takes at 1280 px:
    # closed, as the admin's own toggle leaves it, for the pages that follow.
    driver.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    with new_page(driver):
        element(driver, "#login-form [type=submit]").click()
    element(driver, "#changelist")


def element(driver: webdriver.Chrome, css: str) -> WebElement:
    """Wait for the element ``css`` selects to show; return it."""
    shown = ec.visibility_of_element_located((By.CSS_SELECTOR, css))
    return WebDriverWait(driver, WAIT).until(shown, f"no {css} on {driver.current_url}")


@contextmanager
def new_page(driver: webdriver.Chrome) -> Iterator[None]:
    """Wait, after the block's click or submit, for the page it loads to replace this one."""
    old = driver.find_element(By.TAG_NAME, "html")
    yield
    WebDriverWait(driver, WAIT).until(ec.staleness_of(old), "the page did not change")
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def click(driver: webdriver.Chrome, target: WebElement) -> None:
    """Click a link or a button that loads a page; wait for the page."""
    with new_page(driver):
        target.click()


def rows(driver: webdriver.Chrome) -> list[str]:
    """Return the text of each row of the list on the page."""
    return [row.text for row in driver.find_elements(By.CSS_SELECTOR, "tr.held-key")]


def row_of(driver: webdriver.Chrome, task_id: str) -> list[WebElement]:
    return driver.find_elements(
        By.XPATH, f"//tr[@class='held-key'][td[normalize-space()='{task_id}']]"
    )


def filter_link(driver: webdriver.Chrome, name: str, label: str) -> WebElement:
    return element(driver, f"#filter-{name}").find_element(By.LINK_TEXT, label)


def selected_filter(driver: webdriver.Chrome, name: str) -> str:
    return str(element(driver, f"#filter-{name} li.selected").text)


# Logging in


def test_login_form_takes_staff_to_the_held_keys(page, live_server, staff, screenshot):
    page.get(live_server.url + LIST_URL)
    element(page, "#login-form")
    screenshot("login")

    log_in(page, live_server.url, staff.username)

    assert page.current_url == live_server.url + LIST_URL
    assert element(page, "#content h1").text == "Held locks and ignore windows"
    assert "STAFF" in element(page, "#user-tools").text.upper()
    assert element(page, "#held-keys-empty").text.startswith("No unique lock is held")


# The list


def test_list_shows_locks_and_ignore_windows_with_their_arguments(
    admin, screenshot, keep_arguments
):
    weekly = call(7, label="weekly")
    monthly = call(12, label="monthly")
    braced = call(3, task=tasks.ops_braced_name)
    opened = succeed(8)

    click(admin, element(admin, "#tab-list"))
    listed = rows(admin)
    screenshot(docs="admin-list.png")

    assert len(listed) == 4
    [weekly_row] = [row for row in listed if weekly in row]
    assert TASK in weekly_row
    assert "unique lock" in weekly_row
    assert '(*[7], **{"label": "weekly"})' in weekly_row
    assert any(monthly in row and '"monthly"' in row for row in listed)
    assert any(braced in row and BRACED in row for row in listed)
    [opened_row] = [row for row in listed if opened in row]
    assert "ignore window" in opened_row
    assert "(*[8], **{})" in opened_row
    assert element(admin, "#held-keys-pages").text.startswith("4 keys on this page")


def test_filter_links_narrow_the_list_by_kind(admin, screenshot):
    locked = call(1)
    braced = call(3, task=tasks.ops_braced_name)
    opened = succeed(2)
    click(admin, element(admin, "#tab-list"))

    click(admin, filter_link(admin, "kind", "ignore window"))
    windows = rows(admin)
    click(admin, filter_link(admin, "kind", "unique lock"))
    locks = rows(admin)
    selected = selected_filter(admin, "kind")
    screenshot()
    click(admin, filter_link(admin, "kind", "All"))
    every = rows(admin)

    assert [opened in row for row in windows] == [True]
    assert sorted(locked in row for row in locks) == [False, True]
    assert sorted(braced in row for row in locks) == [False, True]
    assert all("unique lock" in row for row in locks)
    assert selected == "unique lock"
    assert len(every) == 3


def test_filter_links_narrow_the_list_by_task_keeping_the_kind(admin, screenshot):
    locked = call(1)
    call(3, task=tasks.ops_braced_name)
    opened = succeed(2)
    click(admin, element(admin, "#tab-list"))

    click(admin, filter_link(admin, "kind", "unique lock"))
    click(admin, filter_link(admin, "task", TASK))
    both = rows(admin)
    selected = (selected_filter(admin, "kind"), selected_filter(admin, "task"))
    screenshot()
    click(admin, filter_link(admin, "kind", "All"))
    by_task = rows(admin)

    assert [locked in row for row in both] == [True]
    assert selected == ("unique lock", TASK)
    assert len(by_task) == 2
    assert any(opened in row for row in by_task)


def test_search_finds_a_call_by_argument_and_by_holder(admin, screenshot, keep_arguments):
    alpha = call(1, label="alpha")
    beta = call(2, label="beta")
    click(admin, element(admin, "#tab-list"))

    with new_page(admin):
        element(admin, "#searchbar").send_keys("ALPHA", Keys.ENTER)
    by_argument = rows(admin)
    searchbar = element(admin, "#searchbar")
    searchbar.clear()
    with new_page(admin):
        searchbar.send_keys(beta, Keys.ENTER)
    by_holder = rows(admin)
    screenshot()

    assert [alpha in row for row in by_argument] == [True]
    assert [beta in row for row in by_holder] == [True]
    assert element(admin, "#searchbar").get_attribute("value") == beta


# Explain


def test_explain_form_names_the_holder_and_the_next_call(admin, screenshot):
    task_id = call(4, label="weekly")

    click(admin, element(admin, "#tab-explain"))
    element(admin, "#id_task").send_keys(TASK)
    element(admin, "#id_args").send_keys("[4]")
    element(admin, "#id_kwargs").send_keys('{"label": "weekly"}')
    click(admin, element(admin, "#explain-submit"))
    explanation = element(admin, "#explanation").text
    screenshot(docs="admin-explain.png")

    assert f"held by {task_id}" in explanation
    assert f"return the holder's result ({task_id}); nothing is published" in (
        element(admin, "#next-call").text
    )
    assert element(admin, "#release-call").get_attribute("value") == "Release…"


def test_explain_form_with_bad_json_names_the_argument(admin, screenshot):
    click(admin, element(admin, "#tab-explain"))
    element(admin, "#id_task").send_keys(TASK)
    element(admin, "#id_args").send_keys("[1")
    click(admin, element(admin, "#explain-submit"))
    error = element(admin, "#explain-error").text
    screenshot()

    assert error.startswith("args '[1' is not JSON")
    assert element(admin, "#id_args").get_attribute("value") == "[1"
    assert not admin.find_elements(By.ID, "explanation")


# Release


def test_release_after_confirmation_removes_the_lock_and_logs_it(admin, staff, screenshot):
    released = call(1, label="stuck")
    kept = call(2)
    click(admin, element(admin, "#tab-list"))

    [row] = row_of(admin, released)
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    click(admin, element(admin, "#release-selected"))
    asked = element(admin, "#release-keys").text
    holder_before_confirming = holder_of(1, label="stuck")
    screenshot("confirmation", docs="admin-release.png")
    click(admin, element(admin, "#confirm-release"))
    message = element(admin, ".messagelist .success").text
    screenshot()

    assert released in asked
    assert kept not in asked
    assert holder_before_confirming == released
    assert message.startswith("Released unique lock ")
    assert message.endswith(f" of task {TASK} (task id {released}).")
    assert row_of(admin, released) == []
    assert len(row_of(admin, kept)) == 1
    assert holder_of(1, label="stuck") is None
    assert holder_of(2) == kept
    [entry] = LogEntry.objects.filter(user=staff)
    assert entry.action_flag == DELETION
    assert released in entry.change_message


def test_release_can_be_called_off_on_the_confirmation_page(admin, screenshot):
    task_id = call(5)
    click(admin, element(admin, "#tab-list"))

    [row] = row_of(admin, task_id)
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    click(admin, element(admin, "#release-selected"))
    click(admin, element(admin, ".cancel-link"))
    screenshot()

    assert len(row_of(admin, task_id)) == 1
    assert holder_of(5) == task_id
    assert not LogEntry.objects.exists()
