"""The example project as a newcomer meets it: the README's ``manage.py`` commands, and the demo.

The commands are read from README.md's "Installation" and "Why didn't my task run?" sections
(and its subsection "In the Django admin"), so that the README cannot show one that does not work
there. Each runs in a process of its own, in ``example/``, with stdin from /dev/null (as in a
script), the tests' Redis as ``REDIS_URL`` and a key prefix of this test's own, whose keys are
deleted at the end. Those that write the example's SQLite file run in a copy of ``example/``, so
that the checkout's file stays as the developer left it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings

from tests.services import stop_process

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).parent.parent
ADMIN_SECTION = "In the Django admin"
README_SECTIONS = ("Installation", "Why didn't my task run?", ADMIN_SECTION)
DIGEST = "orders.tasks.send_weekly_digest"
HELD_LOCKS_PATH = "/admin/celery_events/heldlock/"
"""The admin page that the README sends the reader to."""
STAFF_PERMISSIONS = ["celery_events.release_heldlock", "celery_events.view_heldlock"]


def readme_sections() -> dict[str, str]:
    """Return the text of each section and subsection of README.md, by heading.

    A section's text ends at its first subsection, whose commands are then its own.
    """
    readme = (ROOT / "README.md").read_text()
    parts = re.split(r"^#{2,3} (.+)\n", readme, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def manage_lines(text: str) -> list[list[str]]:
    """Return the arguments of each ``python manage.py`` line of the ``sh`` blocks of ``text``."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["python", "manage.py"]:
                commands.append(words[2:])
    return commands


def readme_commands(*sections: str) -> list[list[str]]:
    """Return the arguments of each ``python manage.py`` line of the sections, in order."""
    found = readme_sections()
    commands = []
    for section in sections:
        assert section in found, f"README.md has no section {section!r}"
        commands += manage_lines(found[section])
    return commands


def example_prefix() -> str:
    """Return the prefix of the example project's Redis keys in this test session."""
    return f"{settings.KEY_PREFIX}example:"


@pytest.fixture(autouse=True)
def _delete_example_keys(redis_client) -> Iterator[None]:
    yield
    keys = list(redis_client.scan_iter(match=f"{example_prefix()}*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(name="example_copy")
def fixture_example_copy(tmp_path) -> Path:
    """A copy of example/, whose SQLite file is the test's own."""
    return Path(
        shutil.copytree(
            ROOT / "example",
            tmp_path / "example",
            ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__"),
        )
    )


def example_env(*, redis: bool = True) -> dict[str, str]:
    """Return the environment of the example's processes: see :func:`run_example`."""
    env = {**os.environ, "REDIS_URL": settings.REDIS_URL, "DEMO_REDIS_KEY_PREFIX": example_prefix()}
    if not redis:
        del env["REDIS_URL"]
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the test suite's; the example sets its own
    return env


def run_example(
    directory: Path, *args: str, redis: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in the example project at ``directory``, as a newcomer would.

    On the tests' Redis, under :func:`example_prefix` (or, with ``redis=False``, on the
    example's local-memory cache); stdin from /dev/null, as in a script.
    """
    return subprocess.run(  # noqa: S603 - our own interpreter, README and demo
        [sys.executable, *args],
        cwd=directory,
        env=example_env(redis=redis),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def manage(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``python manage.py ARGS`` in example/."""
    return run_example(ROOT / "example", "manage.py", *args)


@contextmanager
def serving(directory: Path, runserver: list[str], log: Path) -> Iterator[str]:
    """Run the README's ``runserver`` line in ``directory`` on a free port; yield its URL.

    It serves until the block ends. ``--noreload``, because the autoreloader serves from a child
    process, which terminating the command would leave behind, holding the port.

    Raises:
        AssertionError: the server stopped, or did not listen within a minute.
    """
    with socket.socket() as sock:  # a port free now; the server takes it a moment later
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with log.open("w") as output:
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and the README's line
            [sys.executable, "manage.py", *runserver, "--noreload", f"127.0.0.1:{port}"],
            cwd=directory,
            env=example_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server, timeout=10)


def admin_login(url: str, username: str, password: str, next_path: str) -> tuple[str, str]:
    """Log in to the admin at ``url`` through its form, as a browser does.

    Returns:
        The URL and the text of the page the login lands on: ``next_path`` when it succeeded.
    """
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    login_url = f"{url}/admin/login/?{urllib.parse.urlencode({'next': next_path})}"
    with browser.open(login_url, timeout=30) as form:
        assert form.status == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.read().decode())
    assert token, "no CSRF token in the login form"
    fields = {
        "csrfmiddlewaretoken": token[1],
        "username": username,
        "password": password,
        "next": next_path,
    }
    with browser.open(login_url, data=urllib.parse.urlencode(fields).encode(), timeout=30) as page:
        return page.url, page.read().decode()


def test_every_manage_py_line_of_the_readme_is_in_a_section_that_these_tests_run():
    every = manage_lines((ROOT / "README.md").read_text())

    assert every == readme_commands(*README_SECTIONS)


def test_readme_commands_work_on_the_example_project(redis_client):
    check, run_once, explain, listing, release, release_all = readme_commands(
        "Installation", "Why didn't my task run?"
    )

    checked = manage(check)
    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues" in checked.stdout

    # The task runs in the shell, and its success opens its ignore window (the exporter says so).
    ran = manage(run_once)
    assert ran.returncode == 0, ran.stderr
    assert "task_succeeded" in ran.stdout
    entry = f"{example_prefix()}cache:*celery-events|held|{DIGEST}|ignore|*"
    assert list(redis_client.scan_iter(match=entry, count=1000))  # under the test's prefix

    explained = manage(explain)
    assert explained.returncode == 0, explained.stderr
    assert re.search(
        r"^ignore window  opened by [0-9a-f-]{36}, 5\d\d\.\d s left$",
        explained.stdout,
        re.MULTILINE,
    )
    assert "next call      be ignored" in explained.stdout

    listed = manage(listing)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^ +5\d\d\.\d s  ignore  {DIGEST}  ", listed.stdout, re.MULTILINE)

    # No terminal to confirm on: release names what it would remove, then asks for --yes.
    asked = manage(release)
    assert asked.returncode == 1
    assert asked.stdout.startswith("ignore window ")
    assert "stdin is not a terminal to answer on: pass --yes" in asked.stderr
    assert "Traceback" not in asked.stderr

    released = manage(release_all)
    assert released.returncode == 0, released.stderr
    assert re.search(r"^released ignore window ", released.stdout, re.MULTILINE)
    assert "ignore window  closed" in manage(explain).stdout


def test_check_warns_that_the_examples_local_memory_cache_locks_nothing_between_processes():
    checked = run_example(ROOT / "example", "manage.py", "check", redis=False)

    assert checked.returncode == 0, checked.stderr
    assert "(celery_events.W002) cache 'default'" in checked.stderr
    assert "orders.tasks." in checked.stderr  # its tasks are found, though no worker imported them


def test_demo_on_redis_deletes_its_keys_and_says_so(redis_client, example_copy):
    done = run_example(example_copy, "demo.py")

    assert done.returncode == 0, done.stderr
    last = done.stdout.rstrip().splitlines()[-1]
    run_prefix = rf"{re.escape(example_prefix())}run-[0-9a-f]{{8}}:"
    deleted = re.fullmatch(
        rf"Deleted this run's (\d+) Redis keys \(({run_prefix})\*\); no other key was touched\.",
        last,
    )
    assert deleted, last
    assert int(deleted[1]) > 0
    assert not list(redis_client.scan_iter(match=f"{deleted[2]}*", count=1000))
    # The failing task fails on purpose, and its log line says so instead of a traceback.
    assert "(expected: the demo's import_catalogue fails on purpose; traceback left out)" in (
        done.stdout
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_staff_user_command_asks_for_migrate_on_a_database_without_tables(example_copy):
    refused = run_example(example_copy, "manage.py", "create_staff_user")

    assert refused.returncode == 1
    assert "run `python manage.py migrate` first" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_staff_user_command_makes_a_staff_user_who_may_only_view_and_release_locks(example_copy):
    assert run_example(example_copy, "manage.py", "migrate").returncode == 0

    created = run_example(example_copy, "manage.py", "create_staff_user")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("Created staff user 'staff' (not a superuser)")
    # Run again, as a script re-run does: the same user, brought back to the same state.
    again = run_example(example_copy, "manage.py", "create_staff_user")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Updated staff user 'staff'")

    checked = run_example(
        example_copy,
        "manage.py",
        "shell",
        "-c",
        "import json; from django.contrib.auth import authenticate, get_user_model; "
        "user = authenticate(username='staff', password='staff'); "
        "print(json.dumps(user and [user.is_staff, user.is_superuser, "
        "sorted(user.get_all_permissions()), get_user_model().objects.count()]))",
    )
    assert checked.returncode == 0, checked.stderr
    # The last line: Django 5.2's shell may first say what it imported.
    assert json.loads(checked.stdout.splitlines()[-1]) == [True, False, STAFF_PERMISSIONS, 1]


def test_readme_admin_commands_let_staff_open_the_held_locks_page(redis_client, example_copy):
    *commands, runserver = readme_commands(ADMIN_SECTION)
    assert runserver[0] == "runserver"  # it serves until stopped: started apart, below
    assert HELD_LOCKS_PATH in readme_sections()[ADMIN_SECTION]
    for args in commands:
        done = run_example(example_copy, "manage.py", *args)
        assert done.returncode == 0, f"{args}: {done.stderr}"

    with serving(example_copy, runserver, example_copy / "runserver.log") as url:
        landed, page = admin_login(url, "staff", "staff", HELD_LOCKS_PATH)

    assert urllib.parse.urlsplit(landed).path == HELD_LOCKS_PATH, page
    # The lock that the README's shell line took, held in Redis: another process's.
    assert "orders.tasks.rebuild_search_index" in page
