# [start:usage]
from celery_events.task import get_django_command_task


def clear_sessions_soon() -> None:
    get_django_command_task("clearsessions").delay_on_commit()


def clear_sessions_quietly() -> None:
    # The task's arguments are the command's: options by name, and ``command_args`` for
    # positional ones, as ``call_command(name, *command_args, **options)`` takes them.
    get_django_command_task("clearsessions").apply_async(kwargs={"verbosity": 0})


# [end:usage]
