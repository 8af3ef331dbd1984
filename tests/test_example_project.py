"""The example project as a newcomer meets it: the README's ``manage.py`` commands, and the demo.

The commands are read from README.md's "Installation" and "Why didn't my task run?" sections, so
that the README cannot show one that does not work there. Each runs in a process of its own, in
``example/``, with stdin from /dev/null (as in a script), the tests' Redis as ``REDIS_URL`` and a
key prefix of this test's own, whose keys are deleted at the end. Those that write the example's
SQLite file run in a copy of ``example/``, so that the checkout's file stays as the developer left
it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).parent.parent
README_SECTIONS = ("Installation", "Why didn't my task run?")
DIGEST = "orders.tasks.send_weekly_digest"


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
