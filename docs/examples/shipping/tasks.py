# [start:task]
from celery import shared_task


@shared_task
def quote_shipping(weight_grams: int) -> int:
    """Return the price of shipping a parcel, in cents."""
    return 490 + weight_grams // 100


# [end:task]
