"""The admin's model of held locks and ignore windows: permissions and log entries, no table.

The locks and windows live in the lock store (Redis), not in the database. :class:`HeldLock` is
an unmanaged model so that Django gives the admin section what it hangs on a model: a place in
the admin index, the ``view_heldlock``, ``view_heldlock_arguments`` and ``release_heldlock``
permissions, and a content type for the admin log's release entries. Its migration creates no
table, and its manager finds no row without asking the database, which has no table to ask.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import ClassVar, cast

from django.db import models

__all__ = ["HeldLock", "HeldLockManager"]


class HeldLockManager(models.Manager["HeldLock"]):
    """The manager of :class:`HeldLock`: every query is empty, and never reaches the database.

    Django's own views look a model's rows up through it, the admin's "view on site" redirect
    (``/admin/r/<content type>/<id>/``) among them: they find no row (a 404), where a query of
    the table that does not exist would be a server error.

    .. versionadded:: 0.2.0
    """

    def get_queryset(self) -> models.QuerySet[HeldLock]:
        """Return an empty queryset, which asks the database nothing."""
        # django-stubs types QuerySet.none() as returning Self, which mypy reads as Any here.
        return cast("models.QuerySet[HeldLock]", super().get_queryset().none())


class HeldLock(models.Model):
    """A unique lock or an open ignore window, as the admin names it; never saved.

    The primary key is the cache key, which the admin log's entries record as their object id.
    """

    key = models.CharField(primary_key=True, max_length=255)

    objects: ClassVar[HeldLockManager] = HeldLockManager()

    class Meta:
        """No table, no row, view and release permissions only, and the section's names."""

        managed = False
        base_manager_name = "objects"
        default_permissions = ("view",)
        permissions = (
            ("view_heldlock_arguments", "Can view the call arguments of held locks"),
            ("release_heldlock", "Can release unique locks and ignore windows"),
        )
        verbose_name = "held lock or ignore window"
        verbose_name_plural = "held locks and ignore windows"

    def __str__(self) -> str:
        """Return the cache key."""
        return self.key
