"""The keeper of a process's leases: it renews them together, and forgets those lost."""

from __future__ import annotations

import logging
import uuid

from celery_events.locks import Lease, get_lock_store
from celery_events.locks.leases import LeaseKeeper


def _claimed(task_id: str) -> Lease:
    """A lease of an attempt of ``task_id``, claimed in the tests' Redis."""
    key = f"test-leases|{uuid.uuid4()}"
    lease = Lease(unique_key=key, task_id=task_id, token=f"{task_id}-attempt", ttl=60)
    get_lock_store().claim(task_id=task_id, unique_key=key, lease=lease)
    return lease


def test_renew_keeps_the_leases_held_and_forgets_one_lost_with_a_warning(caplog):
    keeper = LeaseKeeper(get_lock_store)
    kept, lost = _claimed("kept"), _claimed("lost")
    keeper.hold(kept)
    keeper.hold(lost)
    store = get_lock_store()
    store.release(task_id="lost", unique_key=lost.unique_key, ignore_key=None, ignore_ttl=None)
    store.admit(task_id="newer", unique_key=lost.unique_key, lock_ttl=60, ignore_key=None)

    with caplog.at_level(logging.WARNING, logger="celery_events"):
        keeper.renew()

    assert keeper.held() == [kept]
    assert "task lost lost the lease of its unique lock" in caplog.text
    keeper.drop(kept)


def test_dropped_lease_is_renewed_no_more():
    keeper = LeaseKeeper(get_lock_store)
    lease = _claimed("ended")
    keeper.hold(lease)

    keeper.drop(lease)

    assert keeper.held() == []
