"""The Lua scripts of the Redis lock store: each step of a call is one of them, one round trip.

Every script takes the keys of one call, all in one Redis Cluster hash slot (the lock's, see
:meth:`~celery_events.locks.redis_cache.RedisBinding.key`), named by their *roles*:

- ``lock``: the unique lock; its value is the holder's task id, as the cache encodes values.
- ``lease``: beside the lock while an attempt runs the body: a token of that attempt.
- ``window``: the ignore window; its value is the task id that opened it.
- ``lock_entry``, ``window_entry``: their index entries (``manage.py celery_events list``).
- ``outcome``: the outcome a call left for whoever joined it (its task id in the key's name).
- ``waiters``: the stand-ins parked until that call ends (a hash, by stand-in task id).
- ``done``: the mark of a stand-in's task id that was completed, against a second completion.

The arguments are the same for every script:

- ``ARGV[1]``: the roles of ``KEYS``, in order, separated by spaces.
- ``ARGV[2]``: the task id (encoded as the cache encodes values).
- ``ARGV[3]``: a time to live in milliseconds: the lock's and the lease's (``ADMIT``,
  ``CLAIM``, ``RENEW``, ``STEP_OUT``) or the ignore window's (``RELEASE``); ``0`` for none.
- ``ARGV[4]``, ``ARGV[5]``: the values of the lock's and the window's index entries.
- ``ARGV[6]``: the attempt's lease token (``CLAIM``, ``RENEW``, ``STEP_OUT``, ``RELEASE``) or the
  stand-in to park (``CHECK``); ``''`` for none.
- ``ARGV[7]``: the outcome to leave (``RELEASE``), or the task id of the stand-in to park
  (``CHECK``); ``''`` for none.
- ``ARGV[8]``: how long an outcome, the waiters or a done mark live, in milliseconds.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ADMIT",
    "CHECK",
    "CLAIM",
    "COMPLETE_ONCE",
    "DISCARD",
    "RELEASE",
    "RENEW",
    "STEP_OUT",
]

_PRELUDE: Final = """
local key = {}
local n = 0
for role in string.gmatch(ARGV[1], '%S+') do
    n = n + 1
    key[role] = KEYS[n]
end
local function set(name, value, option)
    if ARGV[3] == '0' then
        if option then
            return redis.call('SET', name, value, option)
        end
        return redis.call('SET', name, value)
    end
    if option then
        return redis.call('SET', name, value, 'PX', ARGV[3], option)
    end
    return redis.call('SET', name, value, 'PX', ARGV[3])
end
"""

#: A call's trigger: {0} when ignored, {1} when the lock is taken (or there is none), and
#: {2, holder} when another task id holds it.
ADMIT: Final = (
    _PRELUDE
    + """
if key.window and redis.call('EXISTS', key.window) == 1 then
    return {0}
end
if key.lock then
    if not set(key.lock, ARGV[2], 'NX') then
        return {2, redis.call('GET', key.lock)}
    end
    if key.lock_entry then
        set(key.lock_entry, ARGV[4])
    end
end
return {1}
"""
)

#: An attempt's start (the gate): takes the lease for the attempt's token and returns {1} when
#: the lock holds the task id, {0} when the lock was free and is now taken; {2, holder} when
#: another task id holds it; {3} when another attempt of the same task id holds the lease (a
#: redelivery while the first delivery runs); {4} when the task id already left an outcome (a
#: redelivery of a call that ended).
CLAIM: Final = (
    _PRELUDE
    + """
if redis.call('EXISTS', key.outcome) == 1 then
    return {4}
end
local holder = redis.call('GET', key.lock)
if holder and holder ~= ARGV[2] then
    return {2, holder}
end
if holder then
    local running = redis.call('GET', key.lease)
    if running and running ~= ARGV[6] then
        return {3}
    end
end
set(key.lock, ARGV[2])
set(key.lease, ARGV[6])
if key.lock_entry then
    set(key.lock_entry, ARGV[4])
end
if holder then
    return {1}
end
return {0}
"""
)

#: A running attempt's lease renewed: 1 while the lock holds its task id and the lease its
#: token (both then live ARGV[3] ms more), 0 when it was lost.
RENEW: Final = (
    _PRELUDE
    + """
if redis.call('GET', key.lock) ~= ARGV[2] or redis.call('GET', key.lease) ~= ARGV[6] then
    return 0
end
redis.call('PEXPIRE', key.lock, ARGV[3])
redis.call('PEXPIRE', key.lease, ARGV[3])
if key.lock_entry then
    redis.call('PEXPIRE', key.lock_entry, ARGV[3])
end
return 1
"""
)

#: An attempt that ends without ending its call (a retry, a replace by the same call): drops
#: its lease and keeps the lock ARGV[3] ms for the next attempt. Returns 1 when the lock
#: still held the task id.
STEP_OUT: Final = (
    _PRELUDE
    + """
if redis.call('GET', key.lease) == ARGV[6] then
    redis.call('DEL', key.lease)
end
if redis.call('GET', key.lock) ~= ARGV[2] then
    return 0
end
redis.call('PEXPIRE', key.lock, ARGV[3])
if key.lock_entry then
    redis.call('PEXPIRE', key.lock_entry, ARGV[3])
end
return 1
"""
)

#: A call's end: frees the lock (and its lease) only when it holds the task id, opens the
#: ignore window, leaves the outcome; returns the stand-ins that waited for it.
RELEASE: Final = (
    _PRELUDE
    + """
if key.lock and redis.call('GET', key.lock) == ARGV[2] then
    redis.call('DEL', key.lock)
    if key.lease then
        redis.call('DEL', key.lease)
    end
    if key.lock_entry then
        redis.call('DEL', key.lock_entry)
    end
end
if key.window then
    set(key.window, ARGV[2])
    if key.window_entry then
        set(key.window_entry, ARGV[5])
    end
end
if key.outcome and ARGV[7] ~= '' then
    redis.call('SET', key.outcome, ARGV[7], 'PX', ARGV[8])
end
if key.waiters then
    local waiting = redis.call('HVALS', key.waiters)
    redis.call('DEL', key.waiters)
    return waiting
end
return {}
"""
)

#: A stand-in's look at the call it joined (ARGV[2]): {1, outcome} when it ended and left one;
#: {2} while the lock holds it (the stand-in ARGV[6], if any, is parked among its waiters, under
#: its task id ARGV[7]: parked again, it is there once); {3, holder} when another call holds the
#: lock; {0} when the lock is free and no outcome left.
CHECK: Final = (
    _PRELUDE
    + """
local outcome = redis.call('GET', key.outcome)
if outcome then
    return {1, outcome}
end
local holder = redis.call('GET', key.lock)
if holder == ARGV[2] then
    if ARGV[6] ~= '' then
        redis.call('HSET', key.waiters, ARGV[7], ARGV[6])
        redis.call('PEXPIRE', key.waiters, ARGV[8])
    end
    return {2}
end
if holder then
    return {3, holder}
end
return {0}
"""
)

#: A stand-in's completion: 1 for the first of its task id, 0 when one came before.
COMPLETE_ONCE: Final = (
    _PRELUDE
    + """
if redis.call('SET', key.done, ARGV[2], 'NX', 'PX', ARGV[8]) then
    return 1
end
return 0
"""
)

#: KEYS: a lock or a window, then its index entry if any; ARGV[1]: the value it must hold.
#: Deletes both and returns 1 when the key holds that value; returns 0 otherwise.
DISCARD: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', unpack(KEYS))
    return 1
end
return 0
"""
