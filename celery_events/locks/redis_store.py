"""The lock store for a Django cache in Redis: atomic, owner-safe, one round trip per step.

A call's trigger is one script (ignore check, then ``SET NX PX`` of the unique lock, or the
holder's id), and a task's completion is one script (compare-and-delete of the lock, then the
ignore window), so no concurrent call slips between the checks and the writes of either. Both
scripts are registered once and run with ``EVALSHA`` (redis-py loads a script the server lacks).

Keys are the cache's own (``make_key``: prefix, version), so two projects on one Redis never share
a lock, and values are written with the cache's serializer, so ``cache.get(unique_key)`` returns
the holder's task id as it did with django-celery-extensions. The ignore window of a unique call
is named with a Redis Cluster hash tag that puts it in the lock's hash slot (see
:meth:`RedisBinding.key`); the lock itself keeps the cache's plain key, so processes of
django-celery-extensions and of this library exclude each other during a rolling upgrade.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, cast

from .base import Admission, Outcome

if TYPE_CHECKING:
    from redis.commands.core import Script

    from .redis_cache import RedisBinding

__all__ = ["RedisLockStore"]

# Both scripts take a call's keys and arguments alike.
# KEYS: the unique lock if ARGV[1] is "1", then the ignore window if ARGV[2] is "1".
# ARGV[3]: the task id (encoded as the cache encodes values); ARGV[4]: a time to live in ms, of
# the lock (ADMIT) or of the ignore window (RELEASE); "0" for none.
_CALL_KEYS: Final = """
local lock, window
if ARGV[1] == '1' then
    lock = KEYS[1]
end
if ARGV[2] == '1' then
    window = KEYS[#KEYS]
end
local function set(key, options)
    if ARGV[4] == '0' then
        return redis.call('SET', key, ARGV[3], unpack(options))
    end
    return redis.call('SET', key, ARGV[3], 'PX', ARGV[4], unpack(options))
end
"""

#: Returns {0} when ignored, {1} when the lock is taken (or there is none), {2, holder} when held.
ADMIT: Final = (
    _CALL_KEYS
    + """
if window and redis.call('EXISTS', window) == 1 then
    return {0}
end
if lock and not set(lock, {'NX'}) then
    return {2, redis.call('GET', lock)}
end
return {1}
"""
)

#: Deletes the lock only when it holds the task id; opens the window with the task id as value.
RELEASE: Final = (
    _CALL_KEYS
    + """
if lock and redis.call('GET', lock) == ARGV[3] then
    redis.call('DEL', lock)
end
if window then
    set(window, {})
end
return 0
"""
)

_ADMITTED: Final = {0: Outcome.IGNORED, 1: Outcome.TRIGGER, 2: Outcome.UNIQUE}


def _milliseconds(seconds: float | None) -> int:
    """Return a time to live for ``PX`` (at least 1 ms), or 0 for a key that never expires."""
    return 0 if seconds is None else max(1, math.ceil(seconds * 1000))


class RedisLockStore:
    """A lock store in the Redis of a Django cache.

    Args:
        binding: the cache's client, key function and serializer.
    """

    def __init__(self, binding: RedisBinding) -> None:
        self.binding = binding
        self._admit = binding.client.register_script(ADMIT)
        self._release = binding.client.register_script(RELEASE)

    def admit(
        self,
        *,
        task_id: str,
        unique_key: str | None,
        lock_ttl: float | None,
        ignore_key: str | None,
    ) -> Admission:
        """See :meth:`LockStore.admit`; one round trip to Redis."""
        reply = self._run(self._admit, "admit", task_id, unique_key, ignore_key, lock_ttl)
        outcome = _ADMITTED[reply[0]]
        if outcome is Outcome.TRIGGER:
            return Admission(outcome, task_id)
        if outcome is Outcome.UNIQUE:
            return Admission(outcome, str(self.binding.decode(reply[1])))
        return Admission(outcome, None)

    def release(
        self,
        *,
        task_id: str,
        unique_key: str | None,
        ignore_key: str | None,
        ignore_ttl: float | None,
    ) -> None:
        """See :meth:`LockStore.release`; one round trip to Redis, owner-safe and atomic."""
        self._run(self._release, "release", task_id, unique_key, ignore_key, ignore_ttl)

    def ignore(
        self,
        *,
        task_id: str,
        ignore_key: str,
        ignore_ttl: float | None,
        unique_key: str | None,
    ) -> None:
        """See :meth:`LockStore.ignore`; one ``SET`` beside the call's lock."""
        binding = self.binding
        with binding.guard(f"open ignore window {ignore_key!r} of task {task_id!r}"):
            binding.client.set(
                binding.key(ignore_key, beside=unique_key),
                binding.encode(task_id),
                px=_milliseconds(ignore_ttl) or None,
            )

    def holder(self, unique_key: str) -> str | None:
        """See :meth:`LockStore.holder`; one ``GET``."""
        binding = self.binding
        with binding.guard(f"read the holder of unique key {unique_key!r}"):
            value = binding.client.get(binding.key(unique_key))
        # The cache's client answers bytes (decode_responses stays off for a cache).
        return None if value is None else str(binding.decode(cast("bytes", value)))

    def _run(
        self,
        script: Script,
        operation: str,
        task_id: str,
        unique_key: str | None,
        ignore_key: str | None,
        ttl: float | None,
    ) -> Any:
        """Run ADMIT or RELEASE with a call's keys; return the script's reply."""
        binding = self.binding
        keys = [] if unique_key is None else [binding.key(unique_key)]
        if ignore_key is not None:
            keys.append(binding.key(ignore_key, beside=unique_key))
        args = (
            "0" if unique_key is None else "1",
            "0" if ignore_key is None else "1",
            binding.encode(task_id),
            _milliseconds(ttl),
        )
        with binding.guard(f"{operation} task {task_id!r} (unique key {unique_key!r})"):
            return script(keys=keys, args=args)
