"""Joins and leases under load: how soon joiners learn, what they publish, what leases cost.

Usage: ``python -m benchmarks.joins [--joiners N] [--rounds R] [--hold S] [--bodies B]
[--json FILE]``

A private redis-server is the lock store, the broker and the result backend (started, and
killed at the end). Two measures, each with real ``celery worker`` subprocesses of
``benchmarks.joins_app``:

- **Joiners.** A prefork worker of four processes runs a held call; while it runs (``--hold``
  seconds), a group of ``--joiners`` calls of the same arguments joins it (each a stand-in, as a
  canvas member is); then the held call returns. Per joiner: the time from the held call's return
  to its own result being stored (Celery's ``date_done``), and the broker messages published for
  its task id (the caller's, and the worker's: wake-ups and watches).
- **Leases.** A worker of one process and ``--bodies`` threads runs that many unique bodies at
  once, each longer than its stale time limit (3 s): the process's renewals per second, and the
  leases each renews.

The scale benchmark (``python -m benchmarks.scale``) counts overlaps and lost calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.lock_helpers import throwaway_redis

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import redis

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> None:
    """Run both measures, print them, and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.joins", description=__doc__)
    parser.add_argument("--joiners", type=int, default=50, help="joiners of one held call")
    parser.add_argument("--rounds", type=int, default=3, help="held calls, one after another")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds a held call runs")
    parser.add_argument("--bodies", type=int, default=100, help="unique bodies at once")
    parser.add_argument("--json", help="also write the results to this file")
    options = parser.parse_args(argv)

    with throwaway_redis() as (url, _):
        os.environ["CELERY_EVENTS_JOINS_REDIS_URL"] = url
        from benchmarks import joins_app  # noqa: PLC0415 - after its Redis is known

        with worker(("-P", "prefork", "-c", "4")):
            joiners = [measure_joiners(joins_app, options) for _ in range(options.rounds)]
        with worker(("-P", "threads", "-c", str(options.bodies))):
            leases = measure_leases(joins_app, options.bodies)
    latencies = [latency for round_ in joiners for latency in round_["latencies"]]
    messages = [count for round_ in joiners for count in round_["messages"]]
    results = {
        "settings": vars(options),
        "joiner latency after the held call returns (s)": {
            "median": statistics.median(latencies),
            "max": max(latencies),
        },
        "broker messages per joiner": {
            "mean": statistics.mean(messages),
            "max": max(messages),
        },
        "renewals (round trips) per second of the worker process": leases["per_second"],
        "leases renewed per renewal": leases["per_renewal"],
    }
    print(json.dumps(results, indent=2))
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2))


@contextmanager
def worker(arguments: Sequence[str]) -> Iterator[None]:
    """Run a ``celery worker`` of ``benchmarks.joins_app`` with ``arguments`` for the block."""
    from benchmarks.joins_app import READY_KEY, records  # noqa: PLC0415

    records().delete(READY_KEY)
    with tempfile.NamedTemporaryFile(prefix="celery-events-joins-", suffix=".log") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "celery", "-A", "benchmarks.joins_app", "worker", "-Q", "joins"),
                *("-l", "warning", "--without-heartbeat", "--without-gossip"),
                *("--without-mingle", *arguments),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 60
            while not records().scard(READY_KEY):
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"the worker did not start:\n{Path(log.name).read_text()}"
                    raise RuntimeError(msg)
                time.sleep(0.1)
            yield
        finally:
            process.terminate()
            process.wait(timeout=60)


def measure_joiners(joins_app: Any, options: argparse.Namespace) -> dict[str, list[float]]:
    """Hold a call, let ``--joiners`` calls join it, end it; return their latencies and messages."""
    from celery import group  # noqa: PLC0415

    client = joins_app.records()
    gate = uuid.uuid4().hex
    holder = joins_app.held.apply_async(args=(gate,))
    while not client.exists(f"joins:started:{gate}"):
        time.sleep(0.01)
    joined = group(joins_app.held.s(gate) for _ in range(options.joiners)).apply_async()
    time.sleep(options.hold)
    client.rpush(f"joins:gate:{gate}", 1)
    holder.get(timeout=60)
    joined.get(timeout=120)
    ended = float(client.get(f"joins:ended:{gate}"))
    latencies = [_done(result) - ended for result in joined.results]
    messages = [int(client.get(f"joins:published:{result.id}") or 0) for result in joined.results]
    return {"latencies": latencies, "messages": messages}


def _done(result: Any) -> float:
    """Return when Celery stored ``result``, as ``time.time()``."""
    done: datetime = result.date_done
    if done.tzinfo is None:
        done = done.replace(tzinfo=timezone.utc)
    return done.timestamp()


def measure_leases(joins_app: Any, bodies: int) -> dict[str, float]:
    """Run ``bodies`` unique bodies of 9 s at once; return the renewals a second, and their size."""
    client: redis.Redis = joins_app.records()
    results = [joins_app.leased.apply_async(args=(key, 9.0)) for key in range(bodies)]
    time.sleep(3)  # every body has started, and holds its lease
    client.delete("joins:renewals", "joins:leases-renewed")
    began = time.monotonic()
    time.sleep(4)
    renewals = int(client.get("joins:renewals") or 0)
    renewed = int(client.get("joins:leases-renewed") or 0)
    elapsed = time.monotonic() - began
    for result in results:
        result.get(timeout=60)
    return {
        "per_second": renewals / elapsed,
        "per_renewal": renewed / renewals if renewals else 0.0,
    }


if __name__ == "__main__":
    main()
