# [start:unique]
from celery import shared_task

from catalog.search import search_index


@shared_task(unique=True, stale_time_limit=600)
def rebuild_search_index(catalog_id: int) -> None:
    search_index.rebuild(catalog_id)


# [end:unique]
