"""The demo shop's one model."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    """A customer's order, which tasks confirm, charge and ship."""

    class Status(models.TextChoices):
        """Where the order is on its way to the customer."""

        NEW = "new"
        PAID = "paid"
        SHIPPED = "shipped"

    email = models.EmailField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)

    def __str__(self) -> str:
        """Return the order's number and status."""
        return f"order #{self.pk} ({self.status})"
