"""Many producers, a few prefork workers: what unique calls cost and guarantee at scale.

Usage: ``python -m benchmarks.scale [--producers N] [--workers M] [--concurrency C] [--keys K]
[--calls N] [--brokers redis amqp] [--json FILE]``

For each broker, M real ``celery worker`` subprocesses (prefork) of ``benchmarks.scale_app``
consume a queue of the run's own, while N producer processes each make ``--calls`` calls on
arguments drawn from K. The same ~5 ms body runs as a unique task (``unique=True``) and as the
same task not unique, one after the other, on the same workers. After each run the harness
waits for the workers to drain the queue, then reports what the bodies recorded (overlapping
bodies of one argument, calls lost or run twice), the producers' throughput and CPU per call,
the workers' drain rate, and the lock store's round trips per call.

Three private redis-servers are started and killed at the end: the lock store (the Django cache;
nothing else uses it, so its ``INFO commandstats`` are the lock store's alone), the bodies'
records, and the Redis broker. The RabbitMQ run uses ``--amqp-url`` and a queue named
``celery-events-scale-<random>``, deleted (with its exchange) at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import redis
from kombu import Connection

from benchmarks.scale_app import READY_KEY, record_prefix
from benchmarks.scale_producer import produce
from tests.lock_helpers import throwaway_redis

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["main"]

ROOT: Final = Path(__file__).resolve().parent.parent
TASKS: Final = {"unique": "scale.unique", "plain": "scale.plain"}
#: Commands that the lock store's scripts run inside Redis, which counts them in
#: ``INFO commandstats`` as well: not round trips. The store sends none of them itself on a
#: call's paths (``python -m benchmarks.lock_commands`` shows what it sends, with MONITOR).
IN_SCRIPTS: Final = frozenset({"get", "set", "del", "exists"})
#: The harness's own commands on the lock store (reading the stats).
OWN_COMMANDS: Final = frozenset({"info"})
#: How long the drain may make no progress before the calls still missing count as lost.
STALL_SECONDS: Final = 30.0
#: How long the counts must stay put once all looks drained (a late duplicate would show).
SETTLE_SECONDS: Final = 1.0


def main(argv: Sequence[str] | None = None) -> None:
    """Run each broker's unique and plain runs, print the report, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--producers", type=int, default=8, help="producer processes")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument("--keys", type=int, default=500, help="distinct arguments")
    parser.add_argument("--calls", type=int, default=2500, help="calls per producer")
    parser.add_argument("--seed", type=int, default=1, help="seed of the arguments' draw")
    parser.add_argument(
        "--brokers", nargs="+", choices=("redis", "amqp"), default=["redis", "amqp"]
    )
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--json", help="also write the results to this file")
    options = parser.parse_args(argv)

    with ExitStack() as stack:
        lock_url = stack.enter_context(throwaway_redis())[0]
        record_url = stack.enter_context(throwaway_redis())[0]
        broker_urls = {"amqp": options.amqp_url}
        if "redis" in options.brokers:
            broker_urls["redis"] = stack.enter_context(throwaway_redis())[0]
        os.environ["CELERY_EVENTS_SCALE_LOCK_URL"] = lock_url
        os.environ["CELERY_EVENTS_SCALE_RECORD_URL"] = record_url
        runs = [
            run
            for broker in options.brokers
            for run in run_broker(options, broker, broker_urls[broker])
        ]
        results = {
            "machine": machine(options, broker_urls),
            "settings": {
                name: getattr(options, name)
                for name in ("producers", "workers", "concurrency", "keys", "calls", "seed")
            },
            "runs": runs,
        }
    print_report(results)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))


def run_broker(options: argparse.Namespace, broker: str, broker_url: str) -> list[dict[str, Any]]:
    """Start the workers on a new queue of ``broker``; run the unique task, then the plain one."""
    queue = f"celery-events-scale-{uuid.uuid4().hex[:8]}"
    os.environ["CELERY_EVENTS_SCALE_BROKER_URL"] = broker_url
    os.environ["CELERY_EVENTS_SCALE_QUEUE"] = queue
    try:
        with workers(options.workers, options.concurrency, queue):
            return [
                {
                    "broker": broker,
                    "task": kind,
                    **run_once(options, TASKS[kind], broker_url, queue),
                }
                for kind in TASKS
            ]
    finally:
        if broker == "amqp":
            with Connection(broker_url) as connection:
                channel: Any = connection.default_channel
                channel.queue_delete(queue)
                channel.exchange_delete(queue)


@contextmanager
def workers(count: int, concurrency: int, queue: str) -> Iterator[None]:
    """Run ``count`` prefork ``celery worker`` subprocesses on ``queue`` for the block.

    Returns once each has announced that it consumes; stops them with a warm shutdown (SIGTERM)
    at the end. Their output goes to a temporary log file, shown when a worker fails to start.
    """
    records = redis.Redis.from_url(os.environ["CELERY_EVENTS_SCALE_RECORD_URL"])
    records.delete(READY_KEY)
    log = tempfile.NamedTemporaryFile(prefix="celery-events-scale-", suffix=".log", delete=False)  # noqa: SIM115 - kept open for the workers' lifetime
    processes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "benchmarks.scale_app", "worker"),
                *("--pool", "prefork", "--concurrency", str(concurrency)),
                *("--queues", queue, "--hostname", f"scale{number}-{queue}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                *("--loglevel", "WARNING"),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for number in range(count)
    ]
    try:
        deadline = time.monotonic() + 120
        while records.scard(READY_KEY) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                msg = f"the workers did not start; their log:\n{Path(log.name).read_text()}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            _stop(process)
        log.close()
        Path(log.name).unlink()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Wait for a worker's warm shutdown; kill it after a minute."""
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_once(
    options: argparse.Namespace, task_name: str, broker_url: str, queue: str
) -> dict[str, Any]:
    """Run the producers on ``task_name``, wait for the drain, and return the run's figures."""
    records = redis.Redis.from_url(
        os.environ["CELERY_EVENTS_SCALE_RECORD_URL"], decode_responses=True
    )
    locks = redis.Redis.from_url(os.environ["CELERY_EVENTS_SCALE_LOCK_URL"])
    prefix = record_prefix(task_name)
    for key in records.scan_iter(match=f"{prefix}*", count=1000):
        records.delete(key)
    stats_before = commandstats(locks)

    def done() -> tuple[float, int]:
        return time.time(), int(records.get(f"{prefix}done") or 0)

    # The drain is counted from the producers' start (the bodies of their first calls, made
    # while the others were still starting, left out), and the backlog's from their end: what
    # the workers finish once the producers leave them the machine.
    marks: list[tuple[float, int]] = []
    produced = run_producers(options, task_name, lambda: marks.append(done()))
    marks.append(done())
    (began_at, done_at_start), (backlog_from, done_at_end) = marks
    expected = {task_id for report in produced for task_id in report["triggered"]}
    with Connection(broker_url) as connection:
        wait_for_drain(records, prefix, len(expected), lambda: queued(connection, queue))
        queue_left = queued(connection, queue)
    commands = {
        name: calls - stats_before.get(name, 0)
        for name, calls in commandstats(locks).items()
        if name not in OWN_COMMANDS and calls != stats_before.get(name, 0)
    }
    runs = {task_id: int(count) for task_id, count in records.hgetall(f"{prefix}runs").items()}
    last = float(records.get(f"{prefix}last") or 0)
    holders = [holder for report in produced for holder in report["holders"]]
    calls = options.producers * options.calls
    all_calls = calls + options.producers  # with each producer's first, untimed, call
    began = min(report["began_at"] for report in produced)
    ended = max(report["ended_at"] for report in produced)
    bodies = sum(runs.values())
    round_trips = sum(count for name, count in commands.items() if name not in IN_SCRIPTS)
    return {
        "calls": calls,
        "untimed_first_calls": options.producers,
        "producer_seconds": ended - began,
        "calls_per_second": calls / (ended - began),
        "cpu_us_per_call": sum(report["cpu"] for report in produced) / calls * 1e6,
        "triggered": len(expected),
        "joined": len(holders),
        "bodies": bodies,
        "overlaps": int(records.get(f"{prefix}overlaps") or 0),
        "lost": len(expected - runs.keys()),
        "joined_to_lost": sum(1 for holder in holders if holder not in runs),
        "run_twice": sum(1 for count in runs.values() if count > 1),
        "bodies_of_unknown_calls": len(runs.keys() - expected),
        "drain_rate": (bodies - done_at_start) / (last - began_at),
        # None when the workers had drained everything by the time the producers were done.
        "backlog_drain_rate": (
            (bodies - done_at_end) / (last - backlog_from) if last > backlog_from else None
        ),
        "drained_after_producers_s": last - ended,
        "lock_round_trips_per_call": round_trips / all_calls,
        "lock_commands": commands,
        "queue_left": queue_left,
        "lock_keys_left": locks.dbsize(),
    }


def run_producers(
    options: argparse.Namespace, task_name: str, on_start: Callable[[], object]
) -> list[dict[str, Any]]:
    """Start the producer processes, release them together, and return their reports.

    ``on_start`` is called as the producers are released (after each made its first call).
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(options.producers + 1)
    results = context.Queue()
    processes = [
        context.Process(
            target=produce,
            args=(index, task_name, options.keys, options.calls, options.seed, barrier, results),
        )
        for index in range(options.producers)
    ]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=300)
        on_start()
        # Read the reports before joining: a process exits only once its report is sent.
        reports = [results.get(timeout=3600) for _ in processes]
    finally:
        barrier.abort()
        for process in processes:
            process.join(timeout=60)
    failed = [process.exitcode for process in processes if process.exitcode != 0]
    if failed:
        msg = f"producers exited with {failed}"
        raise RuntimeError(msg)
    return sorted(reports, key=lambda report: report["index"])


def queued(connection: Connection, queue: str) -> int:
    """Return the messages waiting in ``queue``; on Redis, plus those delivered and not acked."""
    channel: Any = connection.default_channel
    if connection.transport_cls == "redis":
        # No passive declare here: kombu's Redis transport has no queue once its list is empty.
        return int(channel.client.llen(queue) + channel.client.hlen(channel.unacked_key))
    return int(channel.queue_declare(queue=queue, passive=True).message_count)


def wait_for_drain(
    records: redis.Redis, prefix: str, expected: int, queue_size: Callable[[], int]
) -> None:
    """Wait until ``expected`` task ids have run, no body is running and the queue is empty.

    Gives up once no body has finished for ``STALL_SECONDS``: the calls missing are lost.
    """
    progress, progress_at = None, time.monotonic()

    def counts() -> tuple[int, int, int]:
        started, done = records.mget(f"{prefix}started", f"{prefix}done")
        return records.hlen(f"{prefix}runs"), int(started or 0), int(done or 0)

    while time.monotonic() - progress_at < STALL_SECONDS:
        now = counts()
        ran, started, done = now
        if ran >= expected and started == done and queue_size() == 0:
            time.sleep(SETTLE_SECONDS)
            if counts() == now:
                return
        if now != progress:
            progress, progress_at = now, time.monotonic()
        time.sleep(0.1)


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Return the calls of each command Redis has run so far, by command name."""
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in client.info("commandstats").items()
    }


def machine(options: argparse.Namespace, broker_urls: dict[str, str]) -> dict[str, Any]:
    """Describe the machine and the versions the figures were measured with."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    described: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("celery", "kombu", "django", "redis")},
        "redis-server": redis.Redis.from_url(os.environ["CELERY_EVENTS_SCALE_LOCK_URL"]).info(
            "server"
        )["redis_version"],
    }
    if "amqp" in options.brokers:
        with Connection(broker_urls["amqp"]) as connection:
            connection.connect()
            properties = connection.connection.server_properties
            described["rabbitmq"] = properties.get("version")
    return described


def print_report(results: dict[str, Any]) -> None:
    """Print the machine and the sizes, then a table per broker: unique, plain, and their ratio."""
    print("celery-events scale benchmark")
    print(", ".join(f"{key} {value}" for key, value in results["machine"].items()))
    print(", ".join(f"{key} {value}" for key, value in results["settings"].items()))
    rows: list[tuple[str, str, Callable[[Any], str], bool]] = [
        ("producer calls per second", "calls_per_second", "{:.0f}".format, True),
        ("producer CPU per call (us)", "cpu_us_per_call", "{:.0f}".format, True),
        ("producers' wall time (s)", "producer_seconds", "{:.1f}".format, False),
        ("calls that triggered (with the first)", "triggered", str, False),
        ("calls joined (nothing published)", "joined", str, False),
        ("bodies run", "bodies", str, False),
        ("overlapping bodies of one argument", "overlaps", str, False),
        ("lost calls (triggered, body never ran)", "lost", str, False),
        ("joined calls whose holder never ran", "joined_to_lost", str, False),
        ("calls run twice", "run_twice", str, False),
        ("bodies of calls no producer made", "bodies_of_unknown_calls", str, False),
        ("drain rate, whole run (bodies/s)", "drain_rate", "{:.0f}".format, True),
        ("drain rate, backlog (bodies/s)", "backlog_drain_rate", _rate, True),
        ("drained after the producers (s)", "drained_after_producers_s", "{:.1f}".format, False),
        ("lock store round trips per call", "lock_round_trips_per_call", "{:.3f}".format, False),
        ("messages left in the queue", "queue_left", str, False),
        ("keys left in the lock store", "lock_keys_left", str, False),
    ]
    for broker in dict.fromkeys(run["broker"] for run in results["runs"]):
        unique, plain = (
            next(run for run in results["runs"] if run["broker"] == broker and run["task"] == kind)
            for kind in TASKS
        )
        print(f"\n{broker} broker{'':31} {'unique':>10} {'plain':>10} {'ratio':>8}")
        for label, key, show, ratio in rows:
            both = ratio and unique[key] is not None and plain[key]
            quotient = f"x{unique[key] / plain[key]:.3f}" if both else ""
            print(f"  {label:40} {show(unique[key]):>10} {show(plain[key]):>10} {quotient:>8}")
        for run in (unique, plain):
            described = " ".join(f"{name}={count}" for name, count in run["lock_commands"].items())
            print(f"  lock store commands, {run['task']}: {described or 'none'}")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main(sys.argv[1:])
