# [start:hooks]
import logging
from typing import Any

from celery import shared_task

from celery_events.results import ResultWrapper
from celery_events.task import DjangoTask

logger = logging.getLogger(__name__)


class AuditedTask(DjangoTask):
    def on_invocation_unique(
        self,
        invocation_id: str,
        args: Any,
        kwargs: Any,
        task_id: str,
        options: Any,
        result: ResultWrapper,
    ) -> None:
        super().on_invocation_unique(invocation_id, args, kwargs, task_id, options, result)
        logger.info("%s: call %s joined task %s", self.name, invocation_id, task_id)

    def on_task_failure(
        self, task_id: str, args: Any, kwargs: Any, exc: BaseException, einfo: Any
    ) -> None:
        logger.error("%s[%s] failed: %r", self.name, task_id, exc)


@shared_task(base=AuditedTask, unique=True, stale_time_limit=60)
def close_month(month: str) -> str:
    if month == "2024-13":
        msg = f"no such month: {month}"
        raise ValueError(msg)
    return month


# [end:hooks]
