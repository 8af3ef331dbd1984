"""The Celery apps and tasks the benchmarks call: one app per broker, same tasks on each."""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery, Task

from celery_events.task import DjangoTask


class Counter:
    """Counts finished tasks and wakes a waiter at a target count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._target = 0
        self.reached = threading.Event()

    def expect(self, target: int) -> None:
        with self._lock:
            self._count = 0
            self._target = target
            self.reached.clear()

    def add(self) -> None:
        with self._lock:
            self._count += 1
            if self._count == self._target:
                self.reached.set()


finished = Counter()
gate = threading.Event()


def _one_key(task: Any, prefix: str, *_arguments: Any) -> str:
    """Every call of ``bench.joined`` has the same key: all but the first join it."""
    return f"{prefix}:{task.name}:the-one-call"


def make_app(name: str, broker: str) -> tuple[Celery, dict[str, Any]]:
    """Return a Celery app on ``broker`` with the benchmark's tasks, by short name."""
    app = Celery(name, broker=broker, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        broker_transport_options={"global_keyprefix": f"bench-{name}:"},
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(base=Task, name="bench.plain", shared=False)
    def plain(x: int) -> int:
        finished.add()
        return x

    @app.task(base=DjangoTask, name="bench.django", shared=False)
    def django(x: int) -> int:
        finished.add()
        return x

    @app.task(base=DjangoTask, name="bench.unique", shared=False, unique=True, stale_time_limit=60)
    def unique(x: int) -> int:
        finished.add()
        return x

    @app.task(
        base=DjangoTask,
        name="bench.joined",
        shared=False,
        unique=True,
        stale_time_limit=60,
        unique_key_generator=_one_key,
    )
    def joined(x: int) -> int:
        finished.add()
        return x

    @app.task(base=Task, name="bench.wait_for_gate", shared=False)
    def wait_for_gate() -> None:
        gate.wait(timeout=60)

    tasks = {
        "plain": plain,
        "django": django,
        "unique": unique,
        "joined": joined,
        "wait_for_gate": wait_for_gate,
    }
    return app, {name: task._get_current_object() for name, task in tasks.items()}  # noqa: SLF001
