"""An exporter of the project's own, as docs/exporters.md shows it."""

# [start:exporter]
from typing import Any

from celery_events import signals


class PagerExporter:
    def __init__(self, *, service: str) -> None:
        self.service = service
        self.paged: list[str] = []

    def connect(self) -> None:
        signals.task_failure.connect(self.page, weak=False)

    def disconnect(self) -> None:
        signals.task_failure.disconnect(self.page)

    def page(self, task: Any, *, invocation_id: str, exc: Exception, **kwargs: Any) -> None:
        self.paged.append(f"{self.service}: {task.name} failed ({invocation_id}): {exc!r}")


# [end:exporter]
# [start:setting]
DJANGO_CELERY_EXTENSIONS_EXPORTERS = {"alerts.PagerExporter": {"service": "tasks"}}
# [end:setting]
