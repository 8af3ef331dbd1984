"""The lock that lets one beat schedule, and the last run of each entry kept beside it.

The lock is token-owned: the beat that took it is the only one that renews it, records runs
under it or deletes it, each check and write in one server-side script. The last run of each
entry is kept in a hash next to the lock (same Redis Cluster hash slot), written only by the
holder just before it sends, so that a beat taking over knows what the one before it sent.

The hash lives as long as its runs can matter: the holder gives it, with every renewal and every
recorded run, a time to live that it computes from its schedule (see
:meth:`BeatLock.renew`). When every beat has stopped, it expires with the last of those.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .redis_cache import RedisBinding

__all__ = ["BeatLock"]

# Every script: KEYS[1] the lock, KEYS[2] the hash of last runs; ARGV[1] the holder's token.

#: ARGV[2]: time to live in ms. Takes the lock (or renews it, if this token holds it) and
#: returns the last runs as a flat [name, time, ...] list; nil when another token holds it.
TAKE: Final = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
    return false
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('HGETALL', KEYS[2])
"""

#: ARGV[2]: the lock's time to live in ms; ARGV[3]: the last runs' (a hash that does not exist
#: stays so). Returns 1 when renewed, 0 when the token no longer holds it.
RENEW: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

#: ARGV[2], ARGV[3]: an entry's name and its new last run; ARGV[4]: the last runs' time to live
#: in ms. Returns 1 when recorded, 0 when the token no longer holds the lock (nothing is written
#: then).
RECORD: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""

#: Returns 1 when deleted, 0 when the token no longer held the lock.
RELEASE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
return redis.call('DEL', KEYS[1])
"""


class BeatLock:
    """The beat lock of one beat process, in the Redis of a Django cache.

    Every method raises :class:`~celery_events.locks.LockStoreUnavailableError` when the Redis
    cannot be reached.

    Args:
        binding: the cache's client and key function.
        name: the lock's cache key (the ``BEATER_LOCK_KEY`` setting).
        timeout: seconds the lock lives unless renewed (the ``LOCK_TIMEOUT`` setting).
    """

    def __init__(self, binding: RedisBinding, name: str, timeout: float) -> None:
        self.binding = binding
        self.name = name
        self.token = uuid.uuid4().hex
        """This beat's token, the lock's value while it holds the lock."""
        self._keys = (binding.key(name), binding.key(f"{name}|last-run", beside=name))
        self._ttl = max(1, math.ceil(timeout * 1000))
        client = binding.client
        self._take = client.register_script(TAKE)
        self._renew = client.register_script(RENEW)
        self._record = client.register_script(RECORD)
        self._release = client.register_script(RELEASE)

    def take(self) -> dict[str, datetime] | None:
        """Take the lock, or renew it if this beat holds it.

        Returns:
            The last run of each entry, as recorded by the beats that held the lock, or None
            when another beat holds it.
        """
        with self.binding.guard(f"take beat lock {self.name!r}"):
            reply = self._take(keys=self._keys, args=(self.token, self._ttl))
        if reply is None:
            return None
        pairs = iter(reply)
        return {
            name.decode(): datetime.fromisoformat(when.decode())
            for name, when in zip(pairs, pairs, strict=True)
        }

    def renew(self, last_runs_ttl: float) -> bool:
        """Give the lock its full time to live again; return False when this beat lost it.

        Args:
            last_runs_ttl: seconds the recorded last runs live from now (at least the lock's
                own time to live): until the latest time at which one of them still matters.
        """
        with self.binding.guard(f"renew beat lock {self.name!r}"):
            args = (self.token, self._ttl, self._last_runs_ttl(last_runs_ttl))
            return bool(self._renew(keys=self._keys, args=args))

    def record_run(self, entry: str, when: datetime, last_runs_ttl: float) -> bool:
        """Record ``entry``'s last run as ``when``; return False (recording nothing) when lost.

        Args:
            entry: the entry's name in the schedule.
            when: its new last run.
            last_runs_ttl: as :meth:`renew` takes it, counting this run.
        """
        with self.binding.guard(f"record a run under beat lock {self.name!r}"):
            args = (self.token, entry, when.isoformat(), self._last_runs_ttl(last_runs_ttl))
            return bool(self._record(keys=self._keys, args=args))

    def _last_runs_ttl(self, seconds: float) -> int:
        """Return the last runs' time to live in ms: ``seconds``, and never less than the lock's."""
        return max(self._ttl, math.ceil(seconds * 1000))

    def release(self) -> bool:
        """Delete the lock if this beat holds it; return False when it did not."""
        with self.binding.guard(f"release beat lock {self.name!r}"):
            return bool(self._release(keys=self._keys, args=(self.token,)))
