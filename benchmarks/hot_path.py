"""The hot path's contenders and targets: a call without receivers, and a unique call.

A call of a DjangoTask without receivers, and without a unique lock or an ignore window, should
cost what a plain Celery task's costs; a unique call one Redis round trip more. The *round-trip
floor* stands in the harness where a task stands: its ``apply_async`` sends the lock store's
Redis one ``EVALSHA`` of a script that does nothing, with the keys and arguments of a unique
call's admission (the same size on the wire), then publishes a plain Celery task. A unique call's
added cost is held to its floor's; a call that joins a held call publishes nothing, and is held
to less than a plain publish.
"""

from __future__ import annotations

from typing import Any

from benchmarks.contenders import DJANGO, PLAIN, UNIQUE, Contender, nothing

__all__ = [
    "JOINED",
    "ROUND_TRIP_FLOOR",
    "UNIQUE_REDIS_CONTENDERS",
    "RoundTripFloor",
    "hot_path_costs",
]

ROUND_TRIP_FLOOR = Contender("celery Task + floor: one EVALSHA round trip", "round_trip", nothing)
JOINED = Contender("DjangoTask unique, joining a held call", "joined", nothing)
UNIQUE_REDIS_CONTENDERS = (PLAIN, ROUND_TRIP_FLOOR, UNIQUE, JOINED)


class RoundTripFloor:
    """A plain publish after one round trip of the size of a unique call's admission.

    Args:
        plain_task: the plain Celery task it publishes.
        unique_task: the unique DjangoTask whose admission it copies the size of.
    """

    _NOTHING = "return 1"

    def __init__(self, plain_task: Any, unique_task: Any) -> None:
        from celery_events.config import settings  # noqa: PLC0415 - after django.setup()
        from celery_events.locks import get_lock_store  # noqa: PLC0415

        store = get_lock_store()
        self._task = plain_task
        self._script = store.binding.client.register_script(self._NOTHING)
        key = unique_task.unique_key_generator(settings.UNIQUE_TASK_KEY_PREFIX, (1,), None)
        task_id = "c0ffee00-0000-4000-8000-000000000000"
        self._keys = store._call_keys(key, None, unique_task.name, window_entry=False)  # noqa: SLF001 - the store's own payload
        entries = store._entries(task_id, key, None, unique_task.name, ((1,), None))  # noqa: SLF001
        self._args = store._arguments(self._keys, task_id, ttl=60, entries=entries)  # noqa: SLF001

    def apply_async(self, args: tuple[Any, ...]) -> None:
        """Send the round trip, then publish the plain task."""
        self._script(keys=[name for _, name in self._keys], args=self._args)
        self._task.apply_async(args=args)


def hot_path_costs(paths: dict[str, Any], redis_commands: dict[str, str]) -> list[dict[str, Any]]:
    """Return the hot path's costs as the ratios they are held to, each with its target."""
    from benchmarks.__main__ import _cost  # noqa: PLC0415 - the harness's own verdicts

    def medians(path: str) -> dict[str, float]:
        return {row["contender"]: row["median"] for row in paths[path]["rows"]}

    memory = medians("apply_async, in-memory broker")
    redis_broker = medians("apply_async, Redis broker")
    unique = medians("unique apply_async (Redis lock store), Redis broker")
    worker = medians("worker, tasks per second (Redis broker)")
    plain = unique[PLAIN.name]
    round_trips = sum(
        int(redis_commands[step].split(" ", 1)[0])
        for step in ("per attempt start on a worker (the gate)", "per completion")
    )
    return [
        _cost(
            "no receivers, in-memory broker: DjangoTask / celery Task",
            memory[DJANGO.name] / memory[PLAIN.name],
            at_most=1.05,
        ),
        _cost(
            "no receivers, Redis broker: DjangoTask / celery Task",
            redis_broker[DJANGO.name] / redis_broker[PLAIN.name],
            at_most=1.03,
        ),
        _cost(
            "worker: DjangoTask's throughput / celery Task's",
            worker[DJANGO.name] / worker[PLAIN.name],
            at_least=0.97,
        ),
        _cost(
            "unique apply_async, Redis broker: added cost / the round-trip floor's",
            (unique[UNIQUE.name] - plain) / (unique[ROUND_TRIP_FLOOR.name] - plain),
            at_most=1.3,
        ),
        _cost(
            "a call that joins a held call / a plain publish",
            unique[JOINED.name] / plain,
            at_most=1.0,
        ),
        _cost(
            "worker: unique throughput / celery Task's",
            worker[UNIQUE.name] / worker[PLAIN.name],
            at_least=0.85,
        ),
        _cost(
            "Redis round trips of a unique attempt (its gate and its completion)",
            float(round_trips),
            at_most=1.0,
        ),
    ]
