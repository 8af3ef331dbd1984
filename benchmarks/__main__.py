"""Run every comparison side by side in one process and print per-call medians and ratios.

Usage: ``python -m benchmarks [--rounds N] [--calls N] [--json FILE]`` (``make bench``).

Contenders alternate within each round (the starting one rotates), so machine noise falls on
all of them alike; the ratios against a plain Celery task measured in the same run are the
figures to read. A private redis-server is started for the Redis paths and killed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

from benchmarks.floors import make_floors
from tests.services import throwaway_redis

Measure = Callable[[Any, int], float]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmarks and print the results table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="rounds per comparison")
    parser.add_argument("--calls", type=int, default=1000, help="calls per contender and round")
    parser.add_argument("--worker-tasks", type=int, default=2000, help="tasks per worker round")
    parser.add_argument("--json", help="also write the results to this file")
    options = parser.parse_args(argv)

    with throwaway_redis() as (redis_url, _):
        os.environ["CELERY_EVENTS_BENCH_REDIS_URL"] = redis_url
        results = run(options, redis_url)
    print_report(results)
    if options.json:
        with open(options.json, "w") as output:  # noqa: PTH123
            json.dump(results, output, indent=2)


def run(options: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    """Set Django and Celery up, then run each path; return the results."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django  # noqa: PLC0415

    django.setup()
    import redis  # noqa: PLC0415

    from benchmarks import apps, contenders, hot_path  # noqa: PLC0415

    contenders.configure_sinks()
    memory_app, memory_tasks = apps.make_app("memory", "memory://localhost/")
    redis_app, redis_tasks = apps.make_app("redis", redis_url)
    client = redis.Redis.from_url(redis_url)
    rounds, calls = options.rounds, options.calls
    paths = {
        "apply_async, in-memory broker": compare(
            contenders.APPLY_CONTENDERS,
            {**memory_tasks, **make_floors(memory_tasks["plain"])},
            apply_async_and_purge(memory_app),
            rounds,
            calls,
        ),
        "apply_async, Redis broker": compare(
            contenders.APPLY_CONTENDERS,
            {**redis_tasks, **make_floors(redis_tasks["plain"])},
            apply_async_and_purge(redis_app),
            rounds,
            max(calls // 5, 50),
        ),
        "unique apply_async (Redis lock store), in-memory broker": compare(
            contenders.UNIQUE_CONTENDERS,
            memory_tasks,
            apply_async_and_purge(memory_app, client),
            rounds,
            calls,
        ),
        "unique apply_async (Redis lock store), Redis broker": compare(
            hot_path.UNIQUE_REDIS_CONTENDERS,
            {
                **redis_tasks,
                "round_trip": hot_path.RoundTripFloor(redis_tasks["plain"], redis_tasks["unique"]),
            },
            apply_async_and_purge(redis_app, client),
            rounds,
            max(calls // 5, 50),
        ),
        "attempt start on a worker (the gate), Redis lock store": compare(
            contenders.GATE_CONTENDERS,
            memory_tasks,
            attempt_start(client),
            rounds,
            calls,
        ),
        "worker, tasks per second (Redis broker)": compare_workers(
            contenders.WORKER_CONTENDERS, redis_app, redis_tasks, options.worker_tasks
        ),
    }
    commands = redis_commands(memory_tasks["unique"], redis_url)
    return {
        "machine": machine(),
        "settings": {"rounds": rounds, "calls": calls, "worker_tasks": options.worker_tasks},
        "paths": paths,
        "exporter_costs": exporter_costs(paths),
        "hot_path_costs": hot_path.hot_path_costs(paths, commands),
        "redis_commands": commands,
    }


def exporter_costs(paths: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the exporters' costs as the ratios they are held to, each with its target.

    Per ``apply_async``, an exporter's added cost (its median less the DjangoTask's without
    receivers) against its floor, at most x1.5; both exporters' added cost against the peers'
    (plain Celery instrumented, less plain Celery), at most x0.6. A worker with both exporters
    keeps at least 0.92 of its throughput without them.
    """
    from benchmarks import contenders  # noqa: PLC0415

    costs = []
    for path in ("apply_async, in-memory broker", "apply_async, Redis broker"):
        median = {row["contender"]: row["median"] for row in paths[path]["rows"]}
        added = {name: value - median[contenders.DJANGO.name] for name, value in median.items()}
        plain = median[contenders.PLAIN.name]
        for exporter, floor in contenders.EXPORTER_FLOORS:
            costs.append(
                _cost(
                    f"{path}: {exporter.name}, added cost / its floor",
                    added[exporter.name] / (median[floor.name] - plain),
                    at_most=1.5,
                )
            )
        peers_added = median[contenders.PLAIN_INSTRUMENTED.name] - plain
        costs.extend(
            _cost(
                f"{path}: {both.name}, added cost / the peers' added cost",
                added[both.name] / peers_added,
                at_most=0.6,
            )
            for both in (contenders.DJANGO_BOTH, contenders.DJANGO_BOTH_LEAN)
        )
    throughput = {
        row["contender"]: row["median"]
        for row in paths["worker, tasks per second (Redis broker)"]["rows"]
    }
    costs.extend(
        _cost(
            f"worker: {both.name}, throughput / without",
            throughput[both.name] / throughput[contenders.DJANGO.name],
            at_least=0.92,
        )
        for both in (contenders.DJANGO_BOTH, contenders.DJANGO_BOTH_LEAN)
    )
    costs.append(
        _cost(
            "worker: the floor of both exporters' output, throughput / plain Celery's",
            throughput[contenders.WORKER_FLOOR.name] / throughput[contenders.PLAIN.name],
            at_least=0.92,
        )
    )
    return costs


def _cost(
    what: str, ratio: float, *, at_most: float | None = None, at_least: float | None = None
) -> dict[str, Any]:
    met = (at_most is None or ratio <= at_most) and (at_least is None or ratio >= at_least)
    target = f"<= x{at_most}" if at_most is not None else f">= x{at_least}"
    return {"what": what, "ratio": ratio, "target": target, "met": met}


def machine() -> dict[str, Any]:
    """Describe the machine and the versions the figures were measured with."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")  # noqa: PTH123, SIM115
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("celery", "kombu", "django", "redis", "structlog")},
        "opentelemetry-sdk": version("opentelemetry-sdk"),
    }


def apply_async_and_purge(app: Any, lock_client: Any = None) -> Measure:
    """Time ``apply_async`` calls; purge what they queued (and locks they took) untimed."""
    offset = iter(range(0, 1 << 62, 1 << 20))

    def measure(task: Any, calls: int) -> float:
        start = next(offset)  # new arguments every round: every unique call triggers
        began = time.perf_counter()
        for number in range(start, start + calls):
            task.apply_async(args=(number,))
        elapsed = time.perf_counter() - began
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(app.conf.task_default_queue)
        if lock_client is not None:
            for key in lock_client.scan_iter(match="bench:*", count=1000):
                lock_client.delete(key)
        return elapsed / calls

    return measure


def gate_request(task: Any, number: int) -> Any:
    """Return the request of an attempt of ``task(number)`` whose lock its caller took."""
    from celery.app.task import Context  # noqa: PLC0415

    from celery_events.config import settings  # noqa: PLC0415
    from celery_events.headers import STALE_TIME_LIMIT_HEADER, UNIQUE_KEY_HEADER  # noqa: PLC0415
    from celery_events.locks import get_lock_store  # noqa: PLC0415

    task_id = f"attempt-{number}"
    headers: dict[str, Any] = {}
    if task.unique:
        key = task.unique_key_generator(settings.UNIQUE_TASK_KEY_PREFIX, (number,), None)
        headers = {UNIQUE_KEY_HEADER: key, STALE_TIME_LIMIT_HEADER: 60}
        get_lock_store().admit(task_id=task_id, unique_key=key, lock_ttl=60, ignore_key=None)
    return Context(
        {"id": task_id, "args": (number,), "kwargs": {}, **headers},
        headers=headers,
        called_directly=False,
    )


def attempt_start(lock_client: Any) -> Measure:
    """Time the gate an attempt passes where it runs (``worker.admit_attempt``).

    Each timed attempt is a message of its own whose caller took its lock (untimed): the gate
    claims the lock and takes the attempt's lease, in one round trip. The leases are dropped,
    untimed, once the round is measured.
    """
    from celery_events import worker  # noqa: PLC0415
    from celery_events.locks.leases import keeper  # noqa: PLC0415

    offset = iter(range(0, 1 << 62, 1 << 20))

    def measure(task: Any, calls: int) -> float:
        start = next(offset)
        requests = [gate_request(task, number) for number in range(start, start + calls)]
        began = time.perf_counter()
        for request in requests:
            worker.admit_attempt(task, request)
        elapsed = time.perf_counter() - began
        for lease in keeper.held():
            keeper.drop(lease)
        for key in lock_client.scan_iter(match="bench:*", count=1000):
            lock_client.delete(key)
        return elapsed / calls

    return measure


def compare(
    contenders: Sequence[Any],
    tasks: dict[str, Any],
    measure: Measure,
    rounds: int,
    calls: int,
) -> dict[str, Any]:
    """Alternate the contenders over ``rounds``; return medians (µs) and ratios to the first."""
    samples: dict[str, list[float]] = {contender.name: [] for contender in contenders}
    for round_number in range(-1, rounds):  # round -1 warms up and is not kept
        shift = max(round_number, 0) % len(contenders)
        for contender in (*contenders[shift:], *contenders[:shift]):
            with switched_on(contender):
                per_call = measure(tasks[contender.task], calls)
            if round_number >= 0:
                samples[contender.name].append(per_call * 1e6)
    return summarize(samples, unit="us per call")


def compare_workers(
    contenders: Sequence[Any], app: Any, tasks: dict[str, Any], task_count: int
) -> dict[str, Any]:
    """Measure an in-process worker draining ``task_count`` queued tasks, per contender."""
    from celery.contrib.testing.worker import start_worker  # noqa: PLC0415

    from benchmarks.apps import finished, gate  # noqa: PLC0415

    samples: dict[str, list[float]] = {contender.name: [] for contender in contenders}
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        for round_number in range(-1, 5):
            for contender in contenders:
                with switched_on(contender):
                    gate.clear()
                    tasks["wait_for_gate"].apply_async()
                    task = tasks[contender.task]
                    for number in range(task_count):
                        task.apply_async(args=(number,))
                    finished.expect(task_count)
                    began = time.perf_counter()
                    gate.set()
                    if not finished.reached.wait(timeout=300):
                        msg = f"the worker did not finish {task_count} tasks of {contender.name}"
                        raise RuntimeError(msg)
                    elapsed = time.perf_counter() - began
                if round_number >= 0:
                    samples[contender.name].append(task_count / elapsed)
    return summarize(samples, unit="tasks per second", higher_is_better=True)


@contextmanager
def switched_on(contender: Any) -> Iterator[None]:
    """Connect the contender's instrumentation for the block."""
    switch_off = contender.switch_on()
    try:
        yield
    finally:
        switch_off()


def summarize(
    samples: dict[str, list[float]], *, unit: str, higher_is_better: bool = False
) -> dict[str, Any]:
    """Return each contender's median and its ratio to the first contender's median."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = next(iter(medians.values()))
    return {
        "unit": unit,
        "higher_is_better": higher_is_better,
        "rows": [
            {
                "contender": name,
                "median": median,
                "ratio": median / baseline,
                "spread": (min(samples[name]), max(samples[name])),
            }
            for name, median in medians.items()
        ],
    }


def redis_commands(unique_task: Any, redis_url: str) -> dict[str, str]:
    """List the Redis round trips of one unique call's trigger and of its completion.

    The trigger is an ``apply_async`` on the in-memory broker; the completion is what an eager
    run adds to it. MONITOR sees each command a client sends; a script's own commands are shown
    in brackets. ``python -m benchmarks.lock_commands`` breaks this down per store and step.
    """
    from celery_events import worker  # noqa: PLC0415
    from tests.redis_monitor import monitored  # noqa: PLC0415 - needs Django set up

    def round_trips(action: Callable[[], object]) -> tuple[list[str], list[str]]:
        action()  # warm up: the connection, and the script the server loads once
        with monitored(redis_url) as commands:
            action()
        return commands.sent, commands.in_scripts

    probe = iter(range(1 << 62, 1 << 63))
    trigger = round_trips(lambda: unique_task.apply_async(args=(next(probe),)))
    eager_run = round_trips(lambda: unique_task.apply(args=(next(probe),)))
    completion = (eager_run[0][len(trigger[0]) :], eager_run[1][len(trigger[1]) :])
    # The attempts' messages, whose callers took their locks, made before MONITOR looks.
    requests = iter([gate_request(unique_task, next(probe)) for _ in range(2)])
    gate = round_trips(lambda: worker.admit_attempt(unique_task, next(requests)))
    return {
        "per unique trigger": _describe(trigger),
        "per attempt start on a worker (the gate)": _describe(gate),
        "per completion": _describe(completion),
    }


def _describe(commands: tuple[list[str], list[str]]) -> str:
    sent, in_scripts = commands
    return f"{len(sent)} ({' '.join(sent)} [{' '.join(in_scripts)}])"


def print_report(results: dict[str, Any]) -> None:
    """Print the machine, then one table per path, then the Redis command counts."""
    print("celery-events benchmarks")
    print(", ".join(f"{key} {value}" for key, value in results["machine"].items()))
    print(", ".join(f"{key} {value}" for key, value in results["settings"].items()))
    for path, table in results["paths"].items():
        print(f"\n{path} ({table['unit']}, median; ratio to the first row)")
        for row in table["rows"]:
            low, high = row["spread"]
            print(
                f"  {row['contender']:45s} {row['median']:10.1f}  x{row['ratio']:.3f}"
                f"   (range {low:.1f} to {high:.1f})"
            )
    for title, costs in (
        ("Hot path", results["hot_path_costs"]),
        ("Exporter costs", results["exporter_costs"]),
    ):
        print(f"\n{title} (ratios of medians of this run)")
        for cost in costs:
            verdict = "met" if cost["met"] else "MISSED"
            print(f"  {cost['what']:75s} x{cost['ratio']:.3f}  {cost['target']:8s} {verdict}")
    print("\nRedis round trips of a unique task (private redis-server, MONITOR)")
    for what, count in results["redis_commands"].items():
        print(f"  {what:45s} {count}")


if __name__ == "__main__":
    main(sys.argv[1:])
