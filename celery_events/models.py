"""The admin's model of held locks and ignore windows: permissions and log entries, no table.

The locks and windows live in the lock store (Redis), not in the database. :class:`HeldLock` is
an unmanaged model so that Django gives the admin section what it hangs on a model: a place in
the admin index, the ``view_heldlock`` and ``release_heldlock`` permissions, and a content type
for the admin log's release entries. Its migration creates no table.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from django.db import models

__all__ = ["HeldLock"]


class HeldLock(models.Model):
    """A unique lock or an open ignore window, as the admin names it; never saved.

    The primary key is the cache key, which the admin log's entries record as their object id.
    """

    key = models.CharField(primary_key=True, max_length=255)

    class Meta:
        """No table, view and release permissions only, and the section's names."""

        managed = False
        default_permissions = ("view",)
        permissions = (("release_heldlock", "Can release unique locks and ignore windows"),)
        verbose_name = "held lock or ignore window"
        verbose_name_plural = "held locks and ignore windows"

    def __str__(self) -> str:
        """Return the cache key."""
        return self.key
