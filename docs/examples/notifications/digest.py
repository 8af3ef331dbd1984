# ruff: noqa: S101
# [start:usage]
from notifications.tasks import send_digest


def send_digest_twice(user_id: int) -> None:
    assert send_digest.delay(user_id).state == "SUCCESS"
    ignored = send_digest.delay(user_id)  # within 5 hours of the success
    assert ignored.state == "IGNORED"
    assert ignored.task_id is None  # nothing was published
    assert ignored.get() is None


# [end:usage]
