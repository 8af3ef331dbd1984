# [start:tasks]
from celery import shared_task

from reports.queues import Queue


@shared_task(queue=Queue.FAST)  # queue "fast", time_limit 10, soft_time_limit 8
def ping() -> str:
    return "pong"


@shared_task(queue=Queue.REPORTS, time_limit=7200)  # its own time_limit wins over the queue's
def monthly_report(month: str) -> str:
    return f"report-{month}"


# [end:tasks]
