# [start:all-tasks]
from collections import Counter
from typing import Any

from celery_events import signals

failures: Counter[str] = Counter()


@signals.task_failure.connect
def count_failure(task: Any, *, exc: BaseException, **_: Any) -> None:
    failures[f"{task.name}: {type(exc).__name__}"] += 1


# [end:all-tasks]
# [start:one-task]
from audit.tasks import close_month  # noqa: E402 - the example shows it next to its use

closed: list[str] = []


def remember_closed_month(task: Any, *, retval: str, **_: Any) -> None:
    closed.append(f"{task.name}: {retval}")


signals.task_success.connect(remember_closed_month, sender=close_month)
# [end:one-task]
