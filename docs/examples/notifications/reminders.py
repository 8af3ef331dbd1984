# [start:set-ignore]
from datetime import timedelta

from celery import shared_task

from celery_events.task import DjangoTask
from notifications.gateway import mailer


@shared_task(bind=True, ignore_task_timedelta=timedelta(hours=5))
def remind_to_verify_email(self: DjangoTask, user_id: int) -> bool:
    delivered = mailer.send_reminder(user_id)
    if delivered:
        self.set_ignore_task()  # or self.set_ignore_task(ignore_task_timedelta=timedelta(hours=2))
    return delivered


# [end:set-ignore]
