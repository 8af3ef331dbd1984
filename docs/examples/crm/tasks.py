# [start:example]
import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from django.contrib.auth.models import User
from django.db import transaction

from celery_events import signals
from crm.client import crm

logger = logging.getLogger(__name__)


@shared_task(
    unique=True,  # one call per user at a time; a second call joins the first
    stale_time_limit=600,  # the lock is given up after 10 minutes, whatever happens
    autoretry_for=(ConnectionError,),
    default_retry_delays=(10, 60, 300),  # retry after 10 s, then 1 min, then 5 min
)
def push_user_to_crm(user_id: int) -> None:
    crm.push_user(user_id)


@signals.task_retry.connect  # every retry of every task, in the worker that runs it
def log_retry(
    task: Any, *, invocation_id: str, exc: BaseException, eta: datetime, **_: Any
) -> None:
    logger.warning("%s retries at %s: %r (call %s)", task.name, eta, exc, invocation_id)


def rename_user(user_id: int, first_name: str) -> None:
    with transaction.atomic():
        User.objects.filter(pk=user_id).update(first_name=first_name)
        push_user_to_crm.delay_on_commit(user_id)  # published once the rename is committed


# [end:example]
