# ruff: noqa: S101
# [start:waiting]
from django.contrib.auth.models import User
from django.db import transaction

from accounts.tasks import send_welcome_email


def create_user_and_welcome(username: str, email: str) -> str:
    with transaction.atomic():
        user = User.objects.create_user(username, email)
        result = send_welcome_email.apply_async_on_commit(args=(user.pk,))
        assert result.state == "WAITING"  # nothing is published before the commit
        assert result.task_id is None
    assert result.task_id is not None  # the commit triggered the call
    return result.task_id


# [end:waiting]
