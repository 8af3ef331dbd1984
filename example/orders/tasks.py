"""The demo's tasks, one for each DjangoTask feature that demo.py shows.

They are registered on the demo's Celery app, whose task class is DjangoTask, so
``@app.task(...)`` takes DjangoTask's options without ``base=DjangoTask``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from demo_site.celery import app

from orders.models import Order

if TYPE_CHECKING:
    from celery_events.task import DjangoTask

logger = structlog.get_logger(__name__)


class PaymentGatewayError(Exception):
    """The payment gateway is busy: trying again later helps."""


class CatalogueFormatError(Exception):
    """A catalogue file cannot be read: trying again does not help."""


@app.task
def send_order_confirmation(order_id: int) -> str:
    """Confirm an order to its customer.

    The worker reads the order in its own database connection, so it finds it only once the
    transaction that created the order has committed: hence ``delay_on_commit``.
    """
    order = Order.objects.get(pk=order_id)
    return f"confirmation sent to {order.email}"


@app.task(unique=True, stale_time_limit=30)
def rebuild_search_index(catalogue: str) -> str:
    """Rebuild a catalogue's search index: slow, and pointless to run twice at once."""
    time.sleep(0.3)  # the rebuild's work; a second call made meanwhile joins this one
    return f"index of {catalogue} rebuilt"


@app.task(ignore_task_after_success=True, ignore_task_timedelta=timedelta(minutes=10))
def send_weekly_digest(email: str) -> str:
    """Mail a customer the week's digest: once is enough, however often it is asked for."""
    return f"digest sent to {email}"


@app.task(bind=True, autoretry_for=(PaymentGatewayError,), default_retry_delays=(0.2, 0.4))
def charge_card(self: DjangoTask, order_id: int) -> str:
    """Charge an order's card; the gateway is busy on the first two attempts."""
    logger.info("charging_card", order_id=order_id, attempt=self.request.retries + 1)
    if self.request.retries < 2:
        msg = f"gateway busy on attempt {self.request.retries + 1}"
        raise PaymentGatewayError(msg)
    Order.objects.filter(pk=order_id).update(status=Order.Status.PAID)
    return Order.Status.PAID.value


@app.task
def import_catalogue(path: str) -> None:
    """Import a supplier's catalogue file; the demo's file is malformed, so the task fails."""
    msg = f"{path}: line 1 is not CSV"
    raise CatalogueFormatError(msg)


@app.task
def ship_order(order_id: int) -> str:
    """Mark an order shipped and return its new status."""
    Order.objects.filter(pk=order_id).update(status=Order.Status.SHIPPED)
    return Order.Status.SHIPPED.value
