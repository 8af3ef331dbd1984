"""docs/getting-started.md followed word by word, in a new project of the test's own.

The page is read as a newcomer reads it, one fenced block after another, and each block is done:

- ``sh``: each line is a command. ``pip install`` is checked against this environment (the test
  runs in it); ``createdb NAME`` makes a database of the test's own (the page's settings must name
  NAME); ``python``, ``django-admin`` and ``celery`` run with this environment's interpreter and
  scripts, ``celery ... worker`` in the background for the rest of the page, and
  ``python manage.py shell`` with the next ``pycon`` block as its input. A command the test does
  not know fails it: the page cannot grow a step that nothing follows.
- ``python``: a file, named by its first line: ``# <path>`` writes it whole, ``# <path>, at the
  end`` appends to it, ``# <path>, instead of: <line>`` replaces that line of it.
- ``text``: what the last command of the ``sh`` block before it printed. Each line is found in
  order, ``...`` standing for anything (a line of its own: any lines). The worker's is awaited
  once every other step has run.

The section "When ``check`` finds something" holds variations of the project: each subsection is
made on a copy of the followed project, and ``manage.py check``'s output compared in full.

Where the page names this machine's services (PostgreSQL and Redis on their default ports), the
project runs with settings of the test's own on top of the page's (``proj/own_services.py``, by
``DJANGO_SETTINGS_MODULE``): the test's database, the test suite's Redis, and a key prefix of
the test's own for the broker and the cache, whose keys it deletes at the end.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from django.conf import settings
from packaging.requirements import Requirement

from tests.conftest import wait_for
from tests.services import stop_process

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
EXAMPLES = ROOT / "docs" / "examples"
TROUBLESHOOTING = "## When `check` finds something"
SETTINGS_MODULE = "proj.own_services"

FENCE = re.compile(r"^```(?P<language>\w*)\n(?P<text>.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_HEADER = re.compile(
    r"^# (?P<path>[\w/.]+\.py)(?:, (?P<how>at the end|instead of: (?P<line>.+)))?$"
)


@dataclass(frozen=True)
class Block:
    """A fenced block of the page, with the heading of the subsection it is in."""

    language: str
    text: str
    heading: str


def _blocks(markdown: str) -> list[Block]:
    blocks = []
    for match in FENCE.finditer(markdown):
        before = markdown[: match.start()]
        headings = re.findall(r"^#{2,3} .*$", before, re.MULTILINE)
        blocks.append(Block(match["language"], match["text"], headings[-1] if headings else ""))
    return blocks


def _page() -> tuple[list[Block], dict[str, list[Block]]]:
    """Return the page's steps, and the blocks of each troubleshooting subsection by heading."""
    markdown = PAGE.read_text()
    steps, _, troubleshooting = markdown.partition(TROUBLESHOOTING)
    variations: dict[str, list[Block]] = {}
    for block in _blocks(troubleshooting):
        variations.setdefault(block.heading, []).append(block)
    return _blocks(steps), variations


STEPS, VARIATIONS = _page()


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in line.split("...")))


def _shows(expected: str, output: str) -> bool:
    """Return whether ``output`` has the lines of ``expected``, in order (``...``: anything)."""
    lines = iter(line.rstrip() for line in output.splitlines())
    patterns = (_pattern(line) for line in expected.splitlines() if line != "...")
    return all(any(pattern.fullmatch(line) for line in lines) for pattern in patterns)


def write_file(project: Path, block: Block) -> None:
    """Write the file that a ``python`` block names in its first line, as it says."""
    header, _, _ = block.text.partition("\n")
    match = FILE_HEADER.fullmatch(header)
    assert match, f"a python block of the page names no file in its first line: {header!r}"
    path = project / match["path"]
    if match["how"] is None:
        path.write_text(block.text)
    elif match["line"] is None:
        path.write_text(f"{path.read_text()}\n{block.text}")
    else:
        before = path.read_text()
        assert before.count(match["line"] + "\n") == 1, f"{path} has no line {match['line']!r}"
        path.write_text(before.replace(match["line"] + "\n", block.text.partition("\n")[2]))


@dataclass
class Services:
    """The test's own database and key prefix, and the settings that point the project at them."""

    database: str
    prefix: str
    page_database: str | None = None

    def settings_module(self) -> str:
        """The text of ``proj/own_services.py``: the page's settings, then the test's services."""
        database = {"NAME": self.database, **_database_settings()}
        cache = {"LOCATION": settings.REDIS_URL, "KEY_PREFIX": f"{self.prefix}cache"}
        return (
            '"""The page\'s settings, on the test\'s services (tests/test_getting_started.py)."""\n'
            "from proj.settings import *  # noqa: F403\n"
            "from proj.settings import CACHES, DATABASES\n\n"
            f'DATABASES = {{"default": {{**DATABASES["default"], **{database!r}}}}}\n'
            f"CELERY_BROKER_URL = {settings.REDIS_URL!r}\n"
            f'CELERY_BROKER_TRANSPORT_OPTIONS = {{"global_keyprefix": {self.prefix!r}}}\n'
            f'CACHES = {{"default": {{**CACHES["default"], **{cache!r}}}}}\n'
        )


def _database_settings() -> dict[str, str]:
    """The test suite's PostgreSQL (tests/settings.py), but the database."""
    database = settings.DATABASES["default"]
    return {key: database.get(key) or "" for key in ("HOST", "PORT", "USER", "PASSWORD")}


def _admin_connection() -> psycopg.Connection:
    """A connection to the test suite's PostgreSQL, in autocommit, to create and drop databases."""
    own = _database_settings()
    return psycopg.connect(
        host=own["HOST"],
        port=own["PORT"],
        user=own["USER"],
        password=own["PASSWORD"] or None,
        dbname=os.environ.get("PGDATABASE", "test"),
        autocommit=True,
    )


@pytest.fixture(name="services", scope="module")
def fixture_services(redis_client) -> Iterator[Services]:
    """A database and a Redis key prefix of the test's own, dropped and deleted at the end."""
    own = f"getting_started_{uuid.uuid4().hex[:12]}"
    services = Services(database=own, prefix=f"{settings.KEY_PREFIX}{own}:")
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{own}"')
    try:
        yield services
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')
        keys = list(redis_client.scan_iter(match=f"{services.prefix}*", count=1000))
        if keys:
            redis_client.delete(*keys)


@dataclass
class Follower:
    """Does the steps of the page in ``project``, one block after another."""

    project: Path
    services: Services
    log: Path
    worker: subprocess.Popen[bytes] | None = None
    worker_output: list[str] = field(default_factory=list)
    shell_input: list[str] = field(default_factory=list)
    last_output: str = ""
    last_is_worker: bool = False

    def env(self) -> dict[str, str]:
        """The environment of every command: the test's settings, and nothing of pytest's."""
        environment = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
        environment.pop("PYTHONPATH", None)
        return environment

    def follow(self, steps: list[Block]) -> None:
        """Do ``steps`` in order; wait for the worker's output, if a block showed it, last."""
        pending = list(steps)
        while pending:
            block = pending.pop(0)
            if block.language == "sh":
                for line in block.text.splitlines():
                    self.run(shlex.split(line), pending)
            elif block.language == "python":
                write_file(self.project, block)
            elif block.language == "text" and self.last_is_worker:
                self.worker_output.append(block.text)
            elif block.language == "text":
                assert _shows(block.text, self.last_output), (
                    f"the page shows:\n{block.text}\nthe command printed:\n{self.last_output}"
                )
            else:
                pytest.fail(f"a {block.language or 'plain'} block that the test does not follow")
        for expected in self.worker_output:
            wait_for(
                lambda: self.worker_failed() or _shows(expected, self.log.read_text()),  # noqa: B023 - called at once
                f"the worker to print what the page shows (its log: {self.log})",
            )
            assert not self.worker_failed(), f"the worker stopped:\n{self.log.read_text()}"

    def worker_failed(self) -> bool:
        """Return whether the worker has exited."""
        return self.worker is not None and self.worker.poll() is not None

    def run(self, command: list[str], pending: list[Block]) -> None:
        """Do one command of an ``sh`` block (see the module's docstring)."""
        self.last_is_worker = False
        match command:
            case ["pip", "install", *requirements]:
                for requirement in requirements:
                    _check_installed(Requirement(requirement))
            case ["createdb", name]:
                self.services.page_database = name
                (self.project / "proj" / "own_services.py").write_text(
                    self.services.settings_module()
                )
            case ["celery", *arguments] if "worker" in arguments:
                celery = Path(sys.executable).parent / "celery"
                with self.log.open("wb") as output:
                    self.worker = subprocess.Popen(  # noqa: S603 - this environment's script
                        [str(celery), *arguments],
                        cwd=self.project,
                        env=self.env(),
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                self.last_is_worker = True
            case ["python", "manage.py", "shell"]:
                code = pending.pop(0)
                assert code.language == "pycon", "manage.py shell is followed by its pycon input"
                self.finish([sys.executable, "manage.py", "shell"], stdin=_pycon_code(code.text))
            case ["python", *arguments]:
                self.finish([sys.executable, *arguments])
            case ["django-admin", *arguments]:
                self.finish([sys.executable, "-m", "django", *arguments])
            case _:
                pytest.fail(f"a command that the test does not follow: {shlex.join(command)}")

    def finish(self, command: list[str], stdin: str | None = None) -> None:
        """Run ``command`` in the project to its end; it must succeed. Keep what it printed."""
        returncode, self.last_output = self.output_of(command, stdin)
        assert returncode == 0, f"{shlex.join(command)} failed:\n{self.last_output}"

    def output_of(self, command: list[str], stdin: str | None = None) -> tuple[int, str]:
        """Run ``command`` in the project to its end; return its exit code and what it printed."""
        done = subprocess.run(  # noqa: S603 - this environment's interpreter
            command,
            cwd=self.project,
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def stop(self) -> None:
        """Stop the worker, if one was started."""
        if self.worker is not None:
            stop_process(self.worker)


def _pycon_code(text: str) -> str:
    """Return the code of a ``pycon`` block: its ``>>>`` and ``...`` lines, prompts removed."""
    lines = [line[4:] for line in text.splitlines() if line.startswith((">>> ", "... ", "..."))]
    return "\n".join(lines) + "\n"


def _check_installed(requirement: Requirement) -> None:
    """Check that this environment has ``requirement``, with the extras it names."""
    try:
        distribution = importlib.metadata.distribution(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"the page installs {requirement}, which this environment lacks")
    assert requirement.specifier.contains(distribution.version, prereleases=True), requirement
    extras = set(distribution.metadata.get_all("Provides-Extra") or ())
    assert set(requirement.extras) <= extras, f"{requirement}: {requirement.name} has {extras}"


@pytest.fixture(name="followed", scope="module")
def fixture_followed(services, tmp_path_factory) -> Iterator[Follower]:
    """The project of the page, every step of it followed: the worker ran the task."""
    base = tmp_path_factory.mktemp("getting-started")
    project = base / "project"
    project.mkdir()
    follower = Follower(project, services, base / "worker.log")
    try:
        follower.follow(STEPS)
        yield follower
    finally:
        follower.stop()


@pytest.mark.worker
def test_page_followed_word_by_word_runs_the_task_on_the_worker(followed, services):
    # Every step was done and every output the page shows was printed (the fixture fails if
    # not); the welcome email was printed by the worker that ran the task.
    log = followed.log.read_text()
    assert "To: ada@example.com" in log
    assert "task_succeeded" in log, "the worker's structlog exporter logged the attempt"
    assert services.page_database is not None, "the page makes its database"
    settings_text = (followed.project / "proj" / "settings.py").read_text()
    assert f'"NAME": "{services.page_database}"' in settings_text, "the database it makes is used"


@pytest.fixture(name="variation")
def fixture_variation(followed, tmp_path) -> Follower:
    """A copy of the followed project, to make one of the page's mistakes in."""
    project = tmp_path / "project"
    shutil.copytree(
        followed.project, project, ignore=shutil.ignore_patterns("__pycache__", "*.log")
    )
    return Follower(project, followed.services, tmp_path / "worker.log")


@pytest.mark.parametrize("heading", [heading for heading, blocks in VARIATIONS.items() if blocks])
def test_troubleshooting_mistake_gives_the_check_output_the_page_shows(variation, heading):
    *files, command, output = VARIATIONS[heading]
    for block in files:
        write_file(variation.project, block)

    assert (command.language, command.text) == ("sh", "python manage.py check\n")
    assert output.language == "text"
    _, printed = variation.output_of([sys.executable, "manage.py", "check"])
    assert printed.strip() == output.text.strip()


# The page's files that other examples import (docs/tasks.md's on-commit example, the
# management commands' project): there, they are files of docs/examples, run by
# tests/test_docs_examples.py, and the same as the page's.
SHARED_FILES = {
    "accounts/tasks.py": EXAMPLES / "accounts" / "tasks.py",
    "accounts/views.py": EXAMPLES / "accounts" / "views.py",
    "proj/celery.py": EXAMPLES / "proj" / "celery.py",
    "proj/__init__.py": EXAMPLES / "proj" / "__init__.py",
}


@pytest.mark.parametrize("path", SHARED_FILES)
def test_page_file_is_the_examples_file_of_the_same_name(path):
    (block,) = [b for b in STEPS if b.language == "python" and b.text.startswith(f"# {path}\n")]

    assert block.text.partition("\n")[2].strip() == SHARED_FILES[path].read_text().strip()


def _pip_installs(markdown: str) -> list[Requirement]:
    lines = (line for block in _blocks(markdown) for line in block.text.splitlines())
    return [
        Requirement(argument)
        for line in lines
        if line.startswith("pip install ")
        for argument in shlex.split(line)[2:]
    ]


def test_redis_extra_brings_celerys_redis_transport():
    requires = [Requirement(text) for text in importlib.metadata.requires("celery-events") or ()]

    (transport,) = [r for r in requires if r.marker and r.marker.evaluate({"extra": "redis"})]
    assert (transport.name, transport.extras) == ("celery", {"redis"})


def test_readme_installs_celery_events_with_its_redis_extra_as_the_page_does():
    page = [r for r in _pip_installs(PAGE.read_text()) if r.name == "celery-events"]
    readme = _pip_installs((ROOT / "README.md").read_text())

    assert [str(r) for r in readme] == [str(r) for r in page] == ["celery-events[redis]"]
