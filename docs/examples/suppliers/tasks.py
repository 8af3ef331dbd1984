# [start:task]
from celery import shared_task


@shared_task(
    unique=True,
    time_limit=300,
    autoretry_for=(ConnectionError,),
    default_retry_delays=(30, 120),
)
def import_price_list(supplier_id: int) -> int:
    return supplier_id  # download and store the supplier's price list here


# [end:task]
