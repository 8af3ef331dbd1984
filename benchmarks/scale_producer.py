"""A producer process of ``python -m benchmarks.scale``: calls one task as fast as it can.

Runs in a process of its own (``spawn``), with the harness's environment; see
:func:`produce`.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

__all__ = ["produce"]


def produce(
    index: int,
    task_name: str,
    keys: int,
    calls: int,
    seed: int,
    barrier: Barrier,
    results: Queue[dict[str, Any]],
) -> None:
    """Make ``calls`` calls of ``task_name`` on arguments drawn from ``range(keys)``; report them.

    A first call, on an argument of its own (``keys + index``, so it never joins), opens the
    connections and is not timed. Then the producer waits at ``barrier`` for the others, and
    times its calls, wall clock and CPU (``process_time``). A call triggered when its result's
    task id is its own invocation id; it joined when the id is another call's (the holder's).

    Puts on ``results``: the timings, the task ids of the calls that triggered (the first call
    included), and the holders of the calls that joined.
    """
    import django  # noqa: PLC0415 - the environment is the harness's, set before the spawn

    django.setup()
    from benchmarks.scale_app import app  # noqa: PLC0415

    task: Any = app.tasks[task_name]
    rng = random.Random(seed * 1000 + index)
    arguments = [rng.randrange(keys) for _ in range(calls)]
    triggered = [task.apply_async(args=(keys + index,)).id]
    holders: list[str] = []
    barrier.wait()
    began_at = time.time()
    began, cpu = time.perf_counter(), time.process_time()
    for argument in arguments:
        result = task.apply_async(args=(argument,))
        if result.id == result.invocation_id:
            triggered.append(result.id)
        else:
            holders.append(result.id)
    cpu = time.process_time() - cpu
    elapsed = time.perf_counter() - began
    results.put(
        {
            "index": index,
            "began_at": began_at,
            "ended_at": began_at + elapsed,
            "elapsed": elapsed,
            "cpu": cpu,
            "triggered": triggered,
            "holders": holders,
        }
    )
