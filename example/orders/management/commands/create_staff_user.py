"""``manage.py create_staff_user``: a staff user of the admin who may view and release held locks.

It is what the README's "In the Django admin" runs after ``migrate``. Options rather than
prompts, so that it works in a script (stdin from /dev/null) and when run again: it updates the
user it made before instead of failing on the taken name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

if TYPE_CHECKING:
    from argparse import ArgumentParser

__all__ = ("PERMISSIONS", "Command", "find_permissions")

PERMISSIONS = ("celery_events.view_heldlock", "celery_events.release_heldlock")
"""What the user may do: see the held locks and ignore windows, and release them. Nothing else,
so that the admin shows what a member of staff without superuser rights sees."""

DEFAULT_PASSWORD = "staff"  # the local example's, which the README prints


def find_permissions(names: tuple[str, ...]) -> list[Permission]:
    """Return the permissions named ``app_label.codename``, in the order given.

    Raises:
        CommandError: the database has no tables yet, or a permission does not exist (Django
            creates an app's permissions when ``migrate`` runs after its models are added).
    """
    # _meta is Django's documented Model API, private in name only.
    if Permission._meta.db_table not in connection.introspection.table_names():  # noqa: SLF001
        msg = "the database has no tables yet: run `python manage.py migrate` first"
        raise CommandError(msg)
    found = []
    for name in names:
        app_label, _, codename = name.partition(".")
        permission = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if permission is None:
            msg = (
                f"permission {name!r} does not exist: run `python manage.py migrate`, which "
                f"creates the permissions of the {app_label} app's models"
            )
            raise CommandError(msg)
        found.append(permission)
    return found


class Command(BaseCommand):
    """Create, or bring back to this state, a staff user with exactly :data:`PERMISSIONS`."""

    help = (
        "Create a staff user (not a superuser) who may view and release celery_events' held "
        "locks in the admin; run again, it resets that user's password and permissions."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Add ``--username`` and ``--password``, whose defaults suit a local example only."""
        parser.add_argument("--username", default="staff", help="default: staff")
        parser.add_argument(
            "--password", default=DEFAULT_PASSWORD, help=f"default: {DEFAULT_PASSWORD}"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Create or update the user, then say how to log in.

        Its own permissions become exactly :data:`PERMISSIONS` and it leaves any group, so
        that what it may do does not depend on an earlier run or on another command.

        Raises:
            CommandError: a permission is missing (see :func:`find_permissions`).
        """
        username: str = options["username"]
        password: str = options["password"]
        permissions = find_permissions(PERMISSIONS)
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=username)
            user.is_active = True
            user.is_staff = True
            user.is_superuser = False
            user.set_password(password)
            user.save()
            user.user_permissions.set(permissions)
            user.groups.clear()
        # The password is shown only when it is the default, which the README prints anyway.
        shown = repr(password) if password == DEFAULT_PASSWORD else "the one given by --password"
        self.stdout.write(
            f"{'Created' if created else 'Updated'} staff user {username!r} (not a superuser), "
            f"with the permissions {', '.join(PERMISSIONS)}.\n"
            "To log in: python manage.py runserver, then open "
            f"http://127.0.0.1:8000/admin/celery_events/heldlock/ as {username!r}, password "
            f"{shown}."
        )
