"""Count what Redis runs for a unique call's trigger and for its completion, for both lock stores.

Usage: ``python -m benchmarks.lock_commands``

A private redis-server is started and killed at the end. Each step runs twice, on fresh keys:
once to warm up (the connection, and the Redis store's scripts, which the server loads once),
then measured, with MONITOR. "Round trips" are the commands the client sends; the commands that
the Redis store's scripts run inside the server are listed apart. The generic store
(CacheLockStore) runs here on the same Django RedisCache, through the cache's API, as it would on
any cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import django
from django.conf import settings

from tests.redis_monitor import monitored
from tests.services import throwaway_redis

#: A step of one call: given the store and the call's (unique key, ignore key), what to do first
#: and then what to measure.
Step = tuple[Callable[[Any, tuple[str, Any]], object], Callable[[Any, tuple[str, Any]], object]]


def _admit(task_id: str) -> Callable[[Any, tuple[str, Any]], object]:
    def admit(store: Any, keys: tuple[str, Any]) -> object:
        return store.admit(task_id=task_id, unique_key=keys[0], lock_ttl=60, ignore_key=keys[1])

    return admit


def _claim(store: Any, keys: tuple[str, Any]) -> object:
    from celery_events.locks import Lease  # noqa: PLC0415 - after django.setup()

    lease = Lease(unique_key=keys[0], task_id="a", token="a-attempt", ttl=60)
    return store.claim(task_id="a", unique_key=keys[0], lease=lease)


def _release_after_success(store: Any, keys: tuple[str, Any]) -> object:
    return store.release(task_id="a", unique_key=keys[0], ignore_key=keys[1], ignore_ttl=60)


STEPS: dict[str, Step] = {
    "trigger (lock free)": (lambda _store, _keys: None, _admit("a")),
    "trigger (lock held: joins)": (_admit("a"), _admit("b")),
    "attempt start (the gate)": (_admit("a"), _claim),
    "completion (success)": (_admit("a"), _release_after_success),
}


def measure(url: str, store: Any, step: Step, *, ignore: bool) -> tuple[list[str], list[str]]:
    """Return the commands sent, and those run in scripts, by the measured part of ``step``."""
    prepare, measured = step
    for _ in range(2):  # warm up, then measure
        keys = (str(uuid.uuid4()), str(uuid.uuid4()) if ignore else None)
        prepare(store, keys)
        with monitored(url) as commands:
            measured(store, keys)
    return commands.sent, commands.in_scripts


def main() -> None:
    """Print one line per store, kind of call and step."""
    with throwaway_redis() as (url, _):
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": url,
                    "KEY_PREFIX": "bench-locks",
                }
            },
        )
        django.setup()
        from django.core.cache import caches  # noqa: PLC0415 - after settings.configure()

        from celery_events.locks import CacheLockStore, get_lock_store  # noqa: PLC0415

        stores = {
            "RedisLockStore": get_lock_store(),
            "CacheLockStore": CacheLockStore(caches["default"]),
        }
        print(f"{'store':15} {'call':18} {'step':28} round trips (commands sent)")
        for store_name, store in stores.items():
            for ignore in (False, True):
                call = "unique + ignore" if ignore else "unique"
                for step_name, step in STEPS.items():
                    sent, in_scripts = measure(url, store, step, ignore=ignore)
                    inside = f"; in the script: {' '.join(in_scripts)}" if in_scripts else ""
                    print(
                        f"{store_name:15} {call:18} {step_name:28} "
                        f"{len(sent)} ({' '.join(sent)}{inside})"
                    )


if __name__ == "__main__":
    main()
