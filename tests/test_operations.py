"""``manage.py celery_events``: explain, list and release the locks and ignore windows of calls."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from celery_events import operations
from celery_events.config import settings as celery_events_settings
from celery_events.locks import get_lock_store
from celery_events.operator_input import get_task
from tests import tasks
from tests.conftest import wait_for
from tests.lock_helpers import planted_pickle, use_cache
from tests.redis_monitor import monitored

if TYPE_CHECKING:
    from collections.abc import Iterator

    from celery_events.task import DjangoTask

TASK = "tests.tasks.ops_unique_ignored"
UNRELATED = 100_000


def run(*args: str) -> str:
    out = StringIO()
    call_command("celery_events", *args, stdout=out)
    return out.getvalue()


def hold(x: int, task_id: str, ttl: float = 60, task: DjangoTask = tasks.ops_unique_ignored) -> str:
    """Take the unique lock of ``task(x)`` for ``task_id``, as a trigger does."""
    unique_key = task.unique_key_generator(celery_events_settings.UNIQUE_TASK_KEY_PREFIX, [x], {})
    get_lock_store().admit(
        task_id=task_id, unique_key=unique_key, lock_ttl=ttl, ignore_key=None, task_name=task.name
    )
    return unique_key


def succeed(x: int) -> str:
    """Run ``ops_unique_ignored(x)`` to success, which opens its ignore window; return its id."""
    return str(tasks.ops_unique_ignored.apply(args=(x,)).id)


def run_on(terminal: Terminal, *args: str) -> str:
    """Run the command with ``terminal`` as its stdin; return what it printed."""
    out = StringIO()
    call_command("celery_events", *args, stdin=terminal.stdin, stdout=out)
    return out.getvalue()


@dataclass(frozen=True)
class Terminal:
    """A pseudo-terminal: a real tty for the command's stdin, and a keyboard to type on it."""

    stdin: TextIO
    keyboard: int

    def type(self, text: str) -> None:
        """Type ``text`` (with its newline, the line is sent) for the command to read."""
        os.write(self.keyboard, text.encode())


@pytest.fixture(name="terminal")
def fixture_terminal() -> Iterator[Terminal]:
    keyboard, tty = pty.openpty()
    with os.fdopen(tty) as stdin:
        yield Terminal(stdin, keyboard)
    os.close(keyboard)


def listed_json(*args: str) -> list[dict]:
    """Return the keys of the first page of ``list --json``."""
    return json.loads(run("list", *args, "--json"))["keys"]


def every_page_json(*args: str) -> tuple[list[dict], int]:
    """Return the keys of every page of ``list --json``, following the cursors, and the pages."""
    keys, pages, cursor = [], 0, None
    while True:
        page = json.loads(run("list", *args, "--json", *(["--cursor", cursor] if cursor else [])))
        keys += page["keys"]
        pages += 1
        cursor = page["cursor"]
        if cursor is None:
            return keys, pages


def explain_json(*args: str) -> dict:
    return json.loads(run("explain", TASK, *args, "--json"))


def test_explain_a_free_call_says_it_triggers():
    explained = explain_json("--args", "[1]")

    assert explained["lock"]["task_id"] is None
    assert explained["window"]["task_id"] is None
    assert explained["next_call"] == "triggered"


def test_explain_a_held_lock_names_its_holder_and_time_left():
    hold(1, "holder-1", ttl=30)

    explained = explain_json("--args", "[1]")
    text = run("explain", TASK, "--args", "[1]")

    assert explained["lock"]["task_id"] == "holder-1"
    assert 0 < explained["lock"]["ttl"] <= 30
    assert explained["next_call"] == "unique"
    assert "held by holder-1" in text
    assert "return the holder's result (holder-1)" in text


def test_explain_an_open_ignore_window_says_the_call_is_ignored():
    opener = succeed(2)

    explained = explain_json("--args", "[2]", "--kwargs", "{}")

    assert explained["window"]["task_id"] == opener
    assert 0 < explained["window"]["ttl"] <= 120
    assert explained["lock"]["task_id"] is None  # released by the success
    assert explained["next_call"] == "ignored"
    assert tasks.ops_unique_ignored.apply_async(args=(2,)).state == "IGNORED"


def test_explain_keys_are_the_ones_the_task_uses():
    hold(3, "holder-3")

    # Keyword arguments in any order name the same call, as for the task.
    by_kwargs = explain_json("--kwargs", '{"label": "b", "x": 3}')
    by_args = explain_json("--args", "[3]")

    assert by_args["lock"]["task_id"] == "holder-3"
    assert by_kwargs["lock"]["task_id"] is None
    assert tasks.ops_unique_ignored.is_processing(args=[3]) is True


def test_explain_on_a_cache_that_is_not_redis(settings):
    use_cache(settings, "locmem", django_settings.CACHES["locmem"])
    hold(4, "holder-4")

    explained = explain_json("--args", "[4]")

    assert explained["lock"]["task_id"] == "holder-4"
    assert explained["next_call"] == "unique"


def test_list_shows_locks_and_windows_sorted_by_time_left():
    hold(1, "holder-1", ttl=30)
    opener = succeed(2)

    listed = listed_json()
    text = run("list")

    assert [(key["kind"], key["task_id"]) for key in listed] == [
        ("unique", "holder-1"),
        ("ignore", opener),
    ]
    assert {key["task_name"] for key in listed} == {TASK}
    assert listed[0]["ttl"] <= listed[1]["ttl"]
    assert text.splitlines()[0].split() == [
        "TIME",
        "LEFT",
        "KIND",
        "TASK",
        "TASK",
        "ID",
        "KEY",
        "ARGUMENTS",
    ]
    assert "holder-1" in text.splitlines()[1]


def test_list_json_shows_the_arguments_of_a_real_call(keep_arguments):
    task_id = str(
        tasks.ops_unique_ignored.apply_async(
            args=(5,), kwargs={"label": "x"}, queue="caller-only"
        ).id
    )

    [listed] = listed_json()

    assert (listed["task_id"], listed["args"], listed["kwargs"]) == (task_id, [5], {"label": "x"})


def test_list_filters_by_task():
    hold(1, "holder-1")
    tasks.locks_unique.apply(args=("x",))  # released at once; a hold of another task:
    get_lock_store().admit(
        task_id="other", unique_key="other-key", lock_ttl=60, ignore_key=None, task_name="other"
    )

    assert [key["task_id"] for key in listed_json("--task", TASK)] == ["holder-1"]
    assert run("list", "--task", "tests.tasks.locks_unique") == (
        "no unique lock is held and no ignore window is open\n"
    )


def test_a_task_whose_name_has_braces_is_listed_and_released():
    braced = tasks.ops_braced_name
    hold(1, "holder-1", task=braced)
    opener = str(braced.apply(args=(2,)).id)
    # Index entries name a task with parentheses for braces, so this task's are named as the
    # braced one's: they must still be told apart.
    get_lock_store().admit(
        task_id="lookalike",
        unique_key="lookalike-key",
        lock_ttl=60,
        ignore_key=None,
        task_name="tests.tasks.reports.(daily)",
    )

    listed = listed_json("--task", braced.name)
    out = run("release", "--task", braced.name, "--all", "--yes")

    assert {(key["kind"], key["task_id"]) for key in listed} == {
        ("unique", "holder-1"),
        ("ignore", opener),
    }
    assert {line.split()[-1] for line in out.splitlines() if line.startswith("released")} == {
        "holder-1",
        opener,
    }
    assert [key["task_id"] for key in listed_json()] == ["lookalike"]


def test_list_skips_a_lock_released_by_its_task():
    unique_key = hold(1, "holder-1")
    get_lock_store().release(
        task_id="holder-1", unique_key=unique_key, ignore_key=None, ignore_ttl=None, task_name=TASK
    )

    assert listed_json() == []


def test_index_entries_expire_with_their_keys(redis_client):
    hold(1, "holder-1", ttl=30)

    entries = list(
        redis_client.scan_iter(
            match=f"{django_settings.KEY_PREFIX}*celery-events|held|*", count=1000
        )
    )

    assert len(entries) == 1
    assert 0 < redis_client.pttl(entries[0]) <= 30_000


def test_list_with_100000_unrelated_keys_scans_and_leaves_them(redis_client):
    prefix = f"{django_settings.KEY_PREFIX}unrelated:"
    pipe = redis_client.pipeline(transaction=False)
    for start in range(0, UNRELATED, 10_000):
        pipe.mset({f"{prefix}{n}": n for n in range(start, start + 10_000)})
    pipe.execute()
    try:
        hold(1, "holder-1")

        with monitored(django_settings.REDIS_URL) as commands:
            listed, _ = every_page_json()

        remaining = sum(1 for _ in redis_client.scan_iter(match=f"{prefix}*", count=10_000))
        assert [key["task_id"] for key in listed] == ["holder-1"]
        assert remaining == UNRELATED
        # SCAN walks the keyspace in steps; KEYS would block Redis for all 100,000 at once.
        assert "SCAN" in commands.sent
        assert "KEYS" not in commands.sent
    finally:
        keys = list(redis_client.scan_iter(match=f"{prefix}*", count=10_000))
        for start in range(0, len(keys), 10_000):
            redis_client.delete(*keys[start : start + 10_000])


def test_list_on_a_cache_that_cannot_enumerate_says_so(settings):
    use_cache(settings, "locmem", django_settings.CACHES["locmem"])

    with pytest.raises(CommandError, match=r"'locmem' is not a Redis cache and cannot enumerate"):
        run("list")


def test_release_removes_the_lock_and_the_window_and_prints_them():
    hold(1, "holder-1")
    opener = succeed(2)

    lock_out = run("release", TASK, "--args", "[1]", "--yes")
    window_out = run("release", TASK, "--args", "[2]", "--ignore", "--yes")

    assert "released unique lock" in lock_out
    assert "of holder-1" in lock_out
    assert "released ignore window" in window_out
    assert opener in window_out
    assert explain_json("--args", "[1]")["next_call"] == "triggered"
    assert explain_json("--args", "[2]")["next_call"] == "triggered"


def test_release_lock_only_keeps_the_window():
    opener = succeed(1)

    out = run("release", TASK, "--args", "[1]", "--lock", "--yes")

    assert out == f"nothing to release for {TASK}(*[1], **{{}})\n"
    assert explain_json("--args", "[1]")["window"]["task_id"] == opener


def test_release_asks_for_confirmation(terminal):
    hold(1, "holder-1")
    terminal.type("n\n")

    out = run_on(terminal, "release", TASK, "--args", "[1]")

    assert out.endswith("Release this key? [y/N] nothing released\n")
    assert explain_json("--args", "[1]")["lock"]["task_id"] == "holder-1"


def test_release_confirmed_on_the_terminal_releases(terminal):
    hold(1, "holder-1")
    hold(2, "holder-2")
    terminal.type("yes\n")

    out = run_on(terminal, "release", "--task", TASK, "--all")

    assert "Release these 2 keys? [y/N] released unique lock" in out
    assert listed_json() == []


@pytest.mark.parametrize(
    "args",
    [["release", TASK, "--args", "[1]"], ["release", "--task", TASK, "--all"]],
    ids=["call", "all"],
)
def test_release_without_a_terminal_asks_for_yes_and_keeps_the_keys(args):
    hold(1, "holder-1")

    # A closed stdin, as under cron or with stdin from /dev/null.
    with pytest.raises(CommandError, match=r"stdin is not a terminal.*pass --yes"):
        call_command("celery_events", *args, stdin=StringIO(), stdout=StringIO())

    assert explain_json("--args", "[1]")["lock"]["task_id"] == "holder-1"


def test_release_all_of_a_task():
    hold(1, "holder-1")
    hold(2, "holder-2")
    opener = succeed(3)
    get_lock_store().admit(
        task_id="other", unique_key="other-key", lock_ttl=60, ignore_key=None, task_name="other"
    )

    out = run("release", "--task", TASK, "--all", "--yes")

    assert {line.split()[-1] for line in out.splitlines() if line.startswith("released")} == {
        "holder-1",
        "holder-2",
        opener,
    }
    assert [key["task_name"] for key in listed_json()] == ["other"]


def test_release_racing_a_new_holder_keeps_the_new_holders_lock(terminal, celery_app):
    unique_key = hold(1, "old")
    store = get_lock_store()
    output = StringIO()

    def release() -> None:
        celery_app.set_current()  # Celery's current app is a thread's own
        args = ("release", TASK, "--args", "[1]", "--lock")
        call_command("celery_events", *args, stdin=terminal.stdin, stdout=output)

    command = threading.Thread(target=release, daemon=True)  # never outlives a failed test
    command.start()
    # While the command waits for its answer, between its explain and its release, the old
    # holder finishes and a new call triggers.
    wait_for(lambda: "[y/N]" in output.getvalue(), "the confirmation prompt")
    store.release(
        task_id="old", unique_key=unique_key, ignore_key=None, ignore_ttl=None, task_name=TASK
    )
    hold(1, "new")
    terminal.type("y\n")
    command.join(timeout=30)
    out = output.getvalue()

    assert "released unique lock" not in out
    assert "no longer holds old" in out
    assert store.holder(unique_key) == "new"
    assert [key["task_id"] for key in listed_json()] == ["new"]


def test_release_of_an_explanation_is_owner_safe():
    task = get_task(TASK)
    unique_key = hold(1, "old", ttl=0.05)
    explanation = operations.explain(task, [1], {})
    time.sleep(0.1)  # the old lock expires
    hold(1, "new")

    assert operations.release(task, explanation) == []
    assert get_lock_store().holder(unique_key) == "new"


@pytest.mark.parametrize("skip_checks", [False, True], ids=["checks", "--skip-checks"])
def test_a_project_that_never_imported_its_celery_app_is_told_to_import_it(skip_checks):
    # In a process of its own, tests.settings is such a project: nothing imports tests.celery_app.
    # The system checks say it first (celery_events.E004); without them, the command does.
    options = ["--skip-checks"] if skip_checks else []
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "django", "celery_events", *options, "explain", TASK],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 1
    said = (
        f"unknown task {TASK!r}: it is not registered with Celery app 'default'"
        if skip_checks
        else "(celery_events.E004) no Celery app is loaded when Django starts"
    )
    assert said in done.stderr
    assert "from .celery import app as celery_app" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "tests.tasks.nope"], r"unknown task 'tests.tasks.nope'"),
        (["explain", TASK, "--args", "[1"], r"--args '\[1' is not JSON"),
        (["explain", TASK, "--args", '{"x": 1}'], r"""--args '\{"x": 1\}' is not a JSON list"""),
        (["explain", TASK, "--kwargs", "[1]"], r"--kwargs '\[1\]' is not a JSON object"),
        (["explain", TASK, "--kwargs", "{x}"], r"--kwargs '\{x\}' is not JSON"),
        (["explain", "tests.tasks.add", "--args", "[1, 2]"], r"'tests.tasks.add' is neither"),
        (["release", "tests.tasks.add", "--yes"], r"'tests.tasks.add' is neither"),
        (["release", "--task", "tests.tasks.nope", "--all", "--yes"], r"unknown task"),
        (["release", "--all", "--yes"], r"release --all needs --task NAME"),
        (["explain"], r"name the task"),
    ],
    ids=[
        "unknown-task",
        "args-not-json",
        "args-not-list",
        "kwargs-not-object",
        "kwargs-not-json",
        "neither-unique-nor-ignore",
        "release-neither",
        "release-all-unknown-task",
        "release-all-without-task",
        "no-task",
    ],
)
def test_bad_input_is_a_command_error_naming_it(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def _bad_input(*args: str) -> str:
    """Return the one-line message of the CommandError that the command stops with."""
    with pytest.raises(CommandError) as raised:
        run(*args)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--task", "no.such.task"], "unknown task 'no.such.task'"),
        (["list", "--task", "tests.tasks.add"], "'tests.tasks.add' is neither"),
        (
            ["explain", TASK, "--args", "[" + "9" * 5000 + "]"],
            "has an integer longer than Python's limit of digits",
        ),
        (
            ["explain", TASK, "--args", "[" * 100_000 + "]" * 100_000],
            "is nested deeper than 100 levels",
        ),
        (["list", "--json", "--cursor", "9" * 5000], "is not a SCAN cursor"),
        (["list", "--json", "--cursor", str(2**64)], "is not a SCAN cursor"),
        (["list", "--cursor", "0"], "--cursor pages list --json"),
        (["release", TASK, "--args", "[1]", "--lock", "--ignore"], "not allowed with argument"),
        (["release", TASK, "--args", "[1]", "--ye"], "unrecognized arguments: --ye"),
        (["list", "--js"], "unrecognized arguments: --js"),
    ],
    ids=[
        "list-unknown-task",
        "list-task-without-keys",
        "int-digit-limit",
        "recursion",
        "cursor-int-digit-limit",
        "cursor-past-64-bits",
        "cursor-without-json",
        "lock-and-ignore",
        "abbreviated-yes",
        "abbreviated-json",
    ],
)
def test_bad_input_is_one_line_naming_it(args, message):
    hold(1, "holder-1")

    assert message in _bad_input(*args)
    assert explain_json("--args", "[1]")["lock"]["task_id"] == "holder-1"


def test_release_all_releases_only_the_keys_it_showed(terminal, celery_app):
    hold(1, "holder-1")
    output = StringIO()

    def release() -> None:
        celery_app.set_current()  # Celery's current app is a thread's own
        args = ("release", "--task", TASK, "--all")
        call_command("celery_events", *args, stdin=terminal.stdin, stdout=output)

    command = threading.Thread(target=release, daemon=True)  # never outlives a failed test
    command.start()
    # While the operator reads the keys shown: another call takes a lock of the task, and the
    # lock shown changes hands.
    wait_for(lambda: "[y/N]" in output.getvalue(), "the confirmation prompt")
    hold(2, "taken-meanwhile")
    get_lock_store().release(
        task_id="holder-1",
        unique_key=hold(1, "holder-1"),
        ignore_key=None,
        ignore_ttl=None,
        task_name=TASK,
    )
    hold(1, "new-holder")
    terminal.type("y\n")
    command.join(timeout=30)
    shown, answered = output.getvalue().split("[y/N] ")

    assert "taken-meanwhile" not in shown
    assert "no longer holds holder-1" in answered
    assert not [line for line in answered.splitlines() if line.startswith("released")]
    assert sorted(key["task_id"] for key in listed_json()) == ["new-holder", "taken-meanwhile"]


def test_list_shows_the_arguments_as_the_index_keeps_them(settings):
    def argument_column() -> str:
        [_, row] = run("list").splitlines()
        return row.split(maxsplit=6)[-1]

    tasks.ops_unique_ignored.apply_async(args=(1,), kwargs={"label": "a"}, queue="caller-only")
    redacted = argument_column()
    release = ("release", "--task", TASK, "--all", "--yes")
    run(*release)
    settings.DJANGO_CELERY_EXTENSIONS_INDEX_ARGUMENTS = "all"
    tasks.ops_unique_ignored.apply_async(args=(1,), kwargs={"label": "a"}, queue="caller-only")
    every = argument_column()
    run(*release)
    settings.DJANGO_CELERY_EXTENSIONS_INDEX_ARGUMENTS = "none"
    tasks.ops_unique_ignored.apply_async(args=(1,), kwargs={"label": "a"}, queue="caller-only")

    assert redacted == "(int, label=str)"
    assert every == '(*[1], **{"label": "a"})'
    assert argument_column() == "-"


def test_list_and_explain_escape_the_control_characters_of_what_they_print():
    evil = "evil\x1b]0;pwned\x07\u202e"
    hold(1, evil)

    listed = run("list")
    explained = run("explain", TASK, "--args", "[1]")

    for out in (listed, explained):
        assert "\x1b" not in out
        assert "\x07" not in out
        assert "\u202e" not in out
        assert "evil\\x1b]0;pwned\\x07\\u202e" in out


def test_list_json_is_paged_like_the_admin():
    for x in range(250):
        hold(x, f"holder-{x}")

    first = json.loads(run("list", "--json"))
    keys, pages = every_page_json()

    assert first["cursor"] is not None
    assert len(first["keys"]) < 250
    assert pages > 1
    assert sorted(key["task_id"] for key in keys) == sorted(f"holder-{x}" for x in range(250))


def test_list_reports_a_lock_value_planted_as_a_pickle_and_never_unpickles_it(
    redis_client, tmp_path
):
    ran = tmp_path / "ran"
    planted = hold(1, "holder-1")
    hold(2, "holder-2")
    redis_key = get_lock_store().binding.key(planted)
    redis_client.set(redis_key, planted_pickle(ran), keepttl=True)
    out, err = StringIO(), StringIO()

    call_command("celery_events", "list", stdout=out, stderr=err)
    message = _bad_input("explain", TASK, "--args", "[1]")

    assert not ran.exists()
    assert "holder-2" in out.getvalue()
    assert "bad index entry" in err.getvalue()
    assert "are not a task id" in err.getvalue()
    assert f"key {planted!r} of cache 'default' holds" in message


def test_common_options_work_after_the_subcommand():
    hold(1, "holder-1")

    out = run("list", "--verbosity", "2", "--traceback", "--no-color", "--skip-checks")

    assert "holder-1" in out


def test_settings_given_after_the_subcommand_are_taken():
    # In a process of its own, without DJANGO_SETTINGS_MODULE: --settings names them. The
    # project of tests.settings never imports its Celery app, which plain list does not need
    # (its check, celery_events.E004, says so: skipped).
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [
            *(sys.executable, "-m", "django", "celery_events", "list"),
            *("--settings", "tests.settings", "--skip-checks"),
        ],
        env=env,
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(("TIME LEFT", "no unique lock is held"))
