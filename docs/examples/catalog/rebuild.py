# ruff: noqa: S101
# [start:usage]
from catalog.tasks import rebuild_search_index


def rebuild_twice(catalog_id: int) -> str:
    first = rebuild_search_index.delay(catalog_id)
    second = rebuild_search_index.delay(catalog_id)  # the first call still holds the lock
    assert second.task_id == first.task_id  # the second call joined the first
    assert rebuild_search_index.is_processing(args=(catalog_id,))
    return first.task_id


# [end:usage]
