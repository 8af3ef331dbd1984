"""Time to first byte of the admin's held locks page, with 20,000 held keys in Redis.

Usage: ``python -m benchmarks.admin_page [--rounds N] [--keys N] [--unrelated N]
[--redis-url URL] [--json FILE]``

The lock store is filled through its own ``admit`` (and ``release``, for the ignore windows a
success opens), exactly as calls write it: ``--keys`` held keys of two real DjangoTasks, with
their arguments in the index, 1 in 20 an ignore window and 1 in 20 the lock of a second task;
``--unrelated`` more keys that are not the store's (plain strings) make the keyspace that
``SCAN`` walks busier. All keys live under a prefix of the run's own, expire within an hour,
and are deleted at the end (on failure and Ctrl-C too).

The admin is served over a real socket by Django's threaded WSGI server (runserver's, in a
thread of this process; SQLite in a temporary file), to a staff user who may view held keys and
the calls' arguments, whose session cookie each request sends; the index keeps the arguments
(``INDEX_ARGUMENTS = "all"``): the largest rows a page can have. Each round requests every page
once, on a new connection, the starting page rotating; a first round warms up and is not kept.
Time to first byte runs from sending the request to receiving the first byte of the response.

Then each list page is split in-process: ``operations.held_page`` alone (the ``SCAN`` walk and
its reads), and the page through Django's test client with ``held_page`` answering the same
page at once (the rest: session, permissions, task names, template). On a private server
(the default: a redis-server started and killed here), ``INFO commandstats`` counts the Redis
commands of one request of each page.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from unittest import mock
from urllib.parse import urlencode

import redis

from tests.lock_helpers import throwaway_redis

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import FrameType

__all__ = ["Fetched", "Page", "main"]

LIST_PATH: Final = "/admin/celery_events/heldlock/"
EXPLAIN_PATH: Final = f"{LIST_PATH}explain/"
#: The benchmark's tasks: most keys are the first's; the second holds 1 key in 20.
REPORT_TASK: Final = "bench_admin.send_report"
REBUILD_TASK: Final = "bench_admin.rebuild_index"
#: A key's time to live: the run must not see keys expire, and a run killed hard leaves none.
TTL_SECONDS: Final = 3600
#: One key in SHARE is an ignore window of the first task, and one the lock of the second.
SHARE: Final = 20
#: Found by no key: the search that walks its whole ``SCAN`` budget.
NO_MATCH: Final = "no-such-call-anywhere"
#: Redis commands the harness itself sends around a measured request.
OWN_COMMANDS: Final = frozenset({"info"})
ROW: Final = re.compile(rb'<tr class="held-key">')
NEXT_PAGE: Final = re.compile(rb'<a href="(\?[^"]*)" id="next-page"')


@dataclass(frozen=True)
class Page:
    """A page the benchmark requests.

    Args:
        name: how the report names it.
        path: its path and query.
        held_page: the keyword arguments of ``operations.held_page`` for a list page, None for
            the explain page.
    """

    name: str
    path: str
    held_page: dict[str, Any] | None


@dataclass(frozen=True)
class Fetched:
    """One response, timed from the request's first byte sent.

    Args:
        first_byte: seconds to the response's first byte.
        total: seconds to its last byte.
        status: the HTTP status.
        body: the response's body.
    """

    first_byte: float
    total: float
    status: int
    body: bytes


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the store, serve the admin, time its pages, print the report, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.admin_page", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds per page")
    parser.add_argument("--keys", type=int, default=20_000, help="held keys")
    parser.add_argument("--unrelated", type=int, default=0, help="other keys in the keyspace")
    parser.add_argument(
        "--redis-url", help="a Redis to use (keys under a prefix of the run's own, deleted after)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    options = parser.parse_args(argv)
    if options.keys < SHARE:
        parser.error(f"--keys must be at least {SHARE}")

    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that the keys are deleted then too
    with ExitStack() as stack:
        if options.redis_url:
            url, private = options.redis_url, False
        else:
            url, private = stack.enter_context(throwaway_redis())[0], True
        prefix = f"celery-events-bench-admin-{uuid.uuid4().hex[:8]}"
        stack.enter_context(own_keys(url, prefix))
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-admin-"))
        results = run(options, url, prefix, Path(directory) / "db.sqlite3", private=private)
    print_report(results)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def own_keys(url: str, prefix: str) -> Iterator[None]:
    """Delete every key under ``prefix`` (the run's own) at the end of the block, and only those.

    Raises:
        RuntimeError: keys under ``prefix`` were left after the deletion.
    """
    try:
        yield
    finally:
        client = redis.Redis.from_url(url)
        pattern = f"{_glob_escape(prefix)}:*"
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
        left = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
        client.close()
        if left:
            msg = f"{left} keys under {prefix!r} were left in {url}"
            raise RuntimeError(msg)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def configure_django(url: str, prefix: str, database: Path) -> None:
    """Set Django up: the admin, sessions in SQLite at ``database``, the lock store at ``url``."""
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415

    settings.configure(
        SECRET_KEY="celery-events-bench-admin",
        DEBUG=False,
        USE_TZ=True,
        ALLOWED_HOSTS=["127.0.0.1", "testserver"],
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
            "celery_events",
        ],
        ROOT_URLCONF="benchmarks.admin_urls",
        STATIC_URL="/static/",
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ],
                },
            },
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}},
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": prefix,
            },
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
        # The index keeps the calls' arguments, and the staff user may see them: the largest rows.
        DJANGO_CELERY_EXTENSIONS_INDEX_ARGUMENTS="all",
    )
    django.setup()
    from django.core.management import call_command  # noqa: PLC0415

    call_command("migrate", verbosity=0)


def make_tasks() -> dict[str, Any]:
    """Return the benchmark's DjangoTasks on a Celery app of its own, by name.

    The app is made the default app as well as the current one: the admin's pages look tasks up
    on Celery's current app, which is per thread, and the server answers in threads of its own.
    """
    from celery_events.celery import Celery  # noqa: PLC0415

    app = Celery("bench_admin", broker="memory://localhost/", set_as_current=True)
    app.set_default()

    @app.task(
        name=REPORT_TASK,
        shared=False,
        unique=True,
        stale_time_limit=TTL_SECONDS,
        ignore_task_after_success=True,
        ignore_task_timedelta=timedelta(seconds=TTL_SECONDS),
    )
    def send_report(customer: int, report: str, locale: str = "en") -> None:
        """Stand for a report a project sends once per customer and report."""

    @app.task(name=REBUILD_TASK, shared=False, unique=True, stale_time_limit=TTL_SECONDS)
    def rebuild_index(shard: int) -> None:
        """Stand for a second, rarer, unique task."""

    app.finalize()
    return {REPORT_TASK: app.tasks[REPORT_TASK], REBUILD_TASK: app.tasks[REBUILD_TASK]}


def call_of(number: int) -> tuple[str, list[Any], dict[str, Any], str]:
    """Return the task, args, kwargs and kind of held key ``number`` of the fill."""
    if number % SHARE == 2:
        return REBUILD_TASK, [number], {}, "unique"
    kind = "ignore" if number % SHARE == 1 else "unique"
    return REPORT_TASK, [number, f"monthly-{number % 12 + 1}"], {"locale": "en"}, kind


def fill(tasks: dict[str, Any], keys: int, unrelated: int, url: str, prefix: str) -> float:
    """Write ``keys`` held keys through the lock store, then ``unrelated`` other keys.

    Each lock is one ``admit``, as its call's ``apply_async`` makes it; each ignore window is
    the ``admit`` of its call and then the ``release`` of its success. Returns the seconds taken.
    """
    from celery_events.config import settings  # noqa: PLC0415
    from celery_events.locks import get_lock_store  # noqa: PLC0415

    store = get_lock_store()
    began = time.perf_counter()
    for number in range(keys):
        name, args, kwargs, kind = call_of(number)
        task = tasks[name]
        unique_key = task.unique_key_generator(settings.UNIQUE_TASK_KEY_PREFIX, args, kwargs)
        ignore_key = None
        if task.ignore_task_timedelta is not None:
            ignore_key = task.unique_key_generator(settings.IGNORE_TASK_KEY_PREFIX, args, kwargs)
        task_id = f"bench-{number}-{uuid.uuid4().hex[:12]}"
        store.admit(
            task_id=task_id,
            unique_key=unique_key,
            lock_ttl=TTL_SECONDS,
            ignore_key=ignore_key,
            task_name=name,
            arguments=(args, kwargs),
        )
        if kind == "ignore":  # the call succeeded: its lock goes, its ignore window opens
            store.release(
                task_id=task_id,
                unique_key=unique_key,
                ignore_key=ignore_key,
                ignore_ttl=TTL_SECONDS,
                task_name=name,
                arguments=(args, kwargs),
            )
    client = redis.Redis.from_url(url)
    for start in range(0, unrelated, 1000):
        pipe = client.pipeline(transaction=False)
        for number in range(start, min(start + 1000, unrelated)):
            pipe.set(f"{prefix}:unrelated:{number}", "x", ex=TTL_SECONDS)
        pipe.execute()
    client.close()
    return time.perf_counter() - began


def pages(tasks: dict[str, Any]) -> list[Page]:
    """Return the pages to time; the later page's cursor is found once the server runs."""
    from celery_events.config import settings  # noqa: PLC0415

    _name, args, kwargs, _kind = call_of(SHARE * 3)
    key = tasks[REPORT_TASK].unique_key_generator(settings.UNIQUE_TASK_KEY_PREFIX, args, kwargs)
    # As the list's link names the call: by its index entry, which keeps its arguments.
    explained = {"task": REPORT_TASK, "kind": "unique", "key": key}
    return [
        Page("first page", LIST_PATH, {}),
        Page("next page (the first's cursor)", LIST_PATH, {}),  # completed by later_page()
        Page(
            f"task filter ({REBUILD_TASK}, 1 key in {SHARE})",
            f"{LIST_PATH}?{urlencode({'task': REBUILD_TASK})}",
            {"task_name": REBUILD_TASK},
        ),
        Page(
            f"kind filter (ignore windows, 1 key in {SHARE})",
            f"{LIST_PATH}?kind=ignore",
            {"kind": "ignore"},
        ),
        Page(
            "search matching nothing (whole SCAN budget)",
            f"{LIST_PATH}?{urlencode({'q': NO_MATCH})}",
            {"search": NO_MATCH},
        ),
        Page("explain one call", f"{EXPLAIN_PATH}?{urlencode(explained)}", None),
    ]


def later_page(port: int, cookie: str, page: Page) -> Page:
    """Return ``page`` with the path of the next-page link of the first page.

    Raises:
        RuntimeError: the first page has no next-page link.
    """
    first = fetch(port, LIST_PATH, cookie)
    link = NEXT_PAGE.search(first.body)
    if link is None:
        msg = "the first page has no next-page link"
        raise RuntimeError(msg)
    query = html.unescape(link.group(1).decode())
    cursor = query.split("cursor=", 1)[1]
    return Page(page.name, f"{LIST_PATH}{query}", {"cursor": cursor})


@contextmanager
def serving() -> Iterator[int]:
    """Serve the Django project with runserver's threaded WSGI server; yield its port."""
    from django.core.handlers.wsgi import WSGIHandler  # noqa: PLC0415
    from django.core.servers.basehttp import (  # noqa: PLC0415
        ThreadedWSGIServer,
        WSGIRequestHandler,
    )

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, name="admin-server", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def log_in() -> Any:
    """Create a staff user who may view held keys and arguments; return a client logged in."""
    from django.contrib.auth.models import Permission, User  # noqa: PLC0415
    from django.test import Client  # noqa: PLC0415

    user = User.objects.create_user(username="bench-viewer", password=None, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="celery_events",
            codename__in=["view_heldlock", "view_heldlock_arguments"],
        )
    )
    client = Client()
    client.force_login(user)
    return client


def fetch(port: int, path: str, cookie: str) -> Fetched:
    """GET ``path`` on a new connection (not timed); time the response from the request's send.

    Raises:
        RuntimeError: the response is not one HTTP response.
    """
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Cookie: sessionid={cookie}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        began = time.perf_counter()
        connection.sendall(request)
        chunks = [connection.recv(1 << 16)]
        first_byte = time.perf_counter()
        while chunk := connection.recv(1 << 16):
            chunks.append(chunk)
        ended = time.perf_counter()
    head, separator, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not separator or not head.startswith(b"HTTP/"):
        msg = f"not an HTTP response: {head[:80]!r}"
        raise RuntimeError(msg)
    return Fetched(first_byte - began, ended - began, int(head.split(b" ", 2)[1]), body)


def check(page: Page, fetched: Fetched) -> None:
    """Make sure the page is the one meant: a 200 showing keys, or the call's holder.

    Raises:
        RuntimeError: it is not.
    """
    text = html.unescape(fetched.body.decode())
    wrong = fetched.status != 200 or "errornote" in text
    if page.held_page is None:
        wrong = wrong or "held by bench-" not in text
    elif page.held_page.get("search") is None:
        wrong = wrong or not ROW.search(fetched.body)
    if wrong:
        msg = f"{page.name}: unexpected response (status {fetched.status}):\n{text[:3000]}"
        raise RuntimeError(msg)


def time_pages(port: int, cookie: str, timed: Sequence[Page], rounds: int) -> dict[str, Any]:
    """Request each page once per round, the first page rotating; round -1 warms up."""
    samples: dict[str, list[Fetched]] = {page.name: [] for page in timed}
    for round_number in range(-1, rounds):
        shift = max(round_number, 0) % len(timed)
        for page in (*timed[shift:], *timed[:shift]):
            fetched = fetch(port, page.path, cookie)
            check(page, fetched)
            if round_number >= 0:
                samples[page.name].append(fetched)
    return {
        name: {
            "ttfb_ms": _stats([fetched.first_byte * 1e3 for fetched in fetched_list]),
            "total_ms": _stats([fetched.total * 1e3 for fetched in fetched_list]),
            "rows": len(ROW.findall(fetched_list[-1].body)),
            "bytes": len(fetched_list[-1].body),
        }
        for name, fetched_list in samples.items()
    }


def _stats(values: list[float]) -> dict[str, float]:
    """Return the median, the 95th percentile, and the range of ``values``."""
    p95 = statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else 0.0
    return {
        "median": statistics.median(values),
        "p95": p95 if len(values) > 1 else values[0],
        "min": min(values),
        "max": max(values),
    }


def split(client: Any, timed: Sequence[Page], rounds: int) -> dict[str, Any]:
    """Time each list page's ``held_page`` alone, and the page with its answer ready.

    Both in this process, each over ``rounds`` after one warm-up: ``held_page`` as the admin
    calls it (size 100), and the page through Django's test client (no socket) with
    ``operations.held_page`` patched to return that page at once.
    """
    from celery_events import operations  # noqa: PLC0415

    found: dict[str, Any] = {}
    for page in timed:
        if page.held_page is None:
            continue
        arguments = {"size": 100, **page.held_page}
        alone, rest = [], []
        for round_number in range(-1, rounds):
            began = time.perf_counter()
            answer = operations.held_page(**arguments)
            took = time.perf_counter() - began
            with mock.patch.object(operations, "held_page", return_value=answer):
                began = time.perf_counter()
                response = client.get(page.path)
                rest_took = time.perf_counter() - began
            if response.status_code != 200:
                msg = f"{page.name}: status {response.status_code} through the test client"
                raise RuntimeError(msg)
            if round_number >= 0:
                alone.append(took * 1e3)
                rest.append(rest_took * 1e3)
        found[page.name] = {
            "held_page_ms": _stats(alone),
            "page_without_held_page_ms": _stats(rest),
            "keys_found": len(answer.keys),
        }
    return found


def count_commands(
    url: str, port: int, cookie: str, timed: Sequence[Page]
) -> dict[str, dict[str, int]]:
    """Return the Redis commands of one request of each page (``INFO commandstats`` deltas).

    Meaningful on a private server only: the counts are the server's, from all its clients.
    """
    client = redis.Redis.from_url(url)

    def stats() -> dict[str, int]:
        return {
            name.removeprefix("cmdstat_"): int(values["calls"])
            for name, values in client.info("commandstats").items()
        }

    counted = {}
    for page in timed:
        before = stats()
        fetch(port, page.path, cookie)
        after = stats()
        counted[page.name] = {
            name: calls - before.get(name, 0)
            for name, calls in after.items()
            if name not in OWN_COMMANDS and calls != before.get(name, 0)
        }
    client.close()
    return counted


def run(
    options: argparse.Namespace, url: str, prefix: str, database: Path, *, private: bool
) -> dict[str, Any]:
    """Set up, fill, serve and measure; return the results."""
    configure_django(url, prefix, database)
    tasks = make_tasks()
    fill_seconds = fill(tasks, options.keys, options.unrelated, url, prefix)
    client = log_in()
    cookie = client.cookies["sessionid"].value
    with serving() as port:
        timed = pages(tasks)
        timed[1] = later_page(port, cookie, timed[1])
        http = time_pages(port, cookie, timed, options.rounds)
        commands = count_commands(url, port, cookie, timed) if private else None
    in_process = split(client, timed, options.rounds)
    keyspace = redis.Redis.from_url(url)
    size = keyspace.dbsize()
    keyspace.close()
    return {
        "machine": machine(url),
        "settings": {
            "rounds": options.rounds,
            "keys": options.keys,
            "unrelated": options.unrelated,
            "redis": "private redis-server" if private else "given --redis-url",
        },
        "fill_seconds": fill_seconds,
        "redis_keys": size,
        "pages": [
            {
                "page": page.name,
                "path": page.path,
                **http[page.name],
                **in_process.get(page.name, {}),
                "redis_commands": None if commands is None else commands[page.name],
            }
            for page in timed
        ],
    }


def machine(url: str) -> dict[str, Any]:
    """Describe the machine and the versions the figures were measured with."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    client = redis.Redis.from_url(url)
    server = client.info("server")["redis_version"]
    client.close()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("django", "celery", "redis")},
        "redis-server": server,
    }


def print_report(results: dict[str, Any]) -> None:
    """Print the machine and the sizes, then a line per page: HTTP, then the split."""
    print("celery-events admin list page benchmark")
    print(", ".join(f"{key} {value}" for key, value in results["machine"].items()))
    print(", ".join(f"{key} {value}" for key, value in results["settings"].items()))
    print(
        f"filled in {results['fill_seconds']:.1f} s; {results['redis_keys']} keys in Redis "
        "(held keys, their index entries, unrelated keys)"
    )
    print(
        f"\n{'page':52} {'TTFB median':>11} {'p95':>7} {'rows':>5} {'KiB':>5}"
        f" {'held_page':>9} {'rest':>6}  (ms; held_page and rest: in-process medians)"
    )

    def show(row: dict[str, Any], key: str) -> str:
        return f"{row[key]['median']:.1f}" if key in row else "-"

    for row in results["pages"]:
        print(
            f"  {row['page']:50} {row['ttfb_ms']['median']:11.1f} {row['ttfb_ms']['p95']:7.1f}"
            f" {row['rows']:5d} {row['bytes'] / 1024:5.0f} {show(row, 'held_page_ms'):>9}"
            f" {show(row, 'page_without_held_page_ms'):>6}"
        )
    if results["pages"][0]["redis_commands"] is not None:
        print("\nRedis commands of one request (INFO commandstats of the private server)")
        for row in results["pages"]:
            described = " ".join(f"{name}={n}" for name, n in sorted(row["redis_commands"].items()))
            print(f"  {row['page']:50} {described or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1:])
