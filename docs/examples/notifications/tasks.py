# [start:ignore]
from datetime import timedelta

from celery import shared_task

from notifications.gateway import mailer


@shared_task(ignore_task_after_success=True, ignore_task_timedelta=timedelta(hours=5))
def send_digest(user_id: int) -> None:
    mailer.send_digest(user_id)


# [end:ignore]
