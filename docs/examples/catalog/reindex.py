# [start:key-generator]
from typing import Any

from celery import shared_task

from catalog.search import search_index


def one_lock_per_catalog(
    task: Any, prefix: str, task_args: Any, task_kwargs: dict[str, Any] | None
) -> str:
    """One lock per catalog, whatever products the call names."""
    catalog_id = task_args[0] if task_args else (task_kwargs or {})["catalog_id"]
    return f"{prefix}:{task.name}:{catalog_id}"


@shared_task(unique=True, stale_time_limit=600, unique_key_generator=one_lock_per_catalog)
def reindex_products(catalog_id: int, product_ids: list[int]) -> None:
    search_index.reindex(catalog_id, product_ids)


# [end:key-generator]
