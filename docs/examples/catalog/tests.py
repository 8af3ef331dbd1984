# ruff: noqa: S101
# [start:test]
from catalog.tasks import rebuild_search_index
from celery_events.testing import capture_events


def test_a_second_rebuild_joins_the_first() -> None:
    with capture_events() as events:
        first = rebuild_search_index.delay(7)
        second = rebuild_search_index.delay(7)

    assert [event.name for event in events] == [
        "invocation_apply",
        "invocation_trigger",
        "invocation_apply",
        "invocation_unique",
    ]
    assert second.task_id == first.task_id
    assert events[3].kwargs["task_id"] == events[1].kwargs["task_id"]
    assert events[2].kwargs["invocation_id"] != events[0].kwargs["invocation_id"]


# [end:test]
