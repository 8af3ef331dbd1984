"""A Celery beat scheduler of which any number of replicas run and exactly one schedules.

Run every replica with ``celery -A proj beat -S celery_events.beat.LockedPersistentScheduler``.
The replica that holds the beat lock (a token-owned key in the Redis of the cache named by
``CACHE_NAME``) schedules as :class:`~celery.beat.PersistentScheduler` does and renews the lock
on every tick; the others poll for the lock every ``LOCK_SLEEP`` seconds. A holder that dies
stops renewing, so its lock expires within ``LOCK_TIMEOUT`` seconds and a standby takes over
within ``LOCK_TIMEOUT + LOCK_SLEEP``. A holder that finds its lock lost stops sending and waits
again. Just before each send the holder records the entry's run beside the lock, owner-checked,
so that the replica taking over starts from the runs the one before it made: no entry is sent
twice for one due time across a handover. The recorded runs expire once none of them can matter
any more: at the latest next due time of the holder's schedule, counted again on every tick.

In Django settings, ``CELERY_BEAT_SCHEDULER = "celery_events.beat.LockedPersistentScheduler"``
(with the app's ``config_from_object("django.conf:settings", namespace="CELERY")``) makes it the
scheduler of ``celery beat`` without ``-S``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, cast

from celery.beat import PersistentScheduler, ScheduleEntry
from celery.utils.time import maybe_make_aware
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from .config import SETTING_PREFIX, settings
from .locks import LockStoreUnavailableError
from .locks.beat_lock import BeatLock
from .locks.redis_cache import redis_binding

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["LockedPersistentScheduler"]

logger: Final = logging.getLogger(__name__)


class _LockLostError(Exception):
    """The beat lock was lost (or Redis could not confirm it) just before a send."""


class LockedPersistentScheduler(PersistentScheduler):
    """A PersistentScheduler that schedules only while it holds the beat lock.

    At startup (in :meth:`setup_schedule`, before the first tick) it refuses a cache that is not
    in Redis and a ``LOCK_TIMEOUT`` not greater than the scheduler's ``max_interval`` (the
    lock would expire between two ticks of its holder) with ImproperlyConfigured, and a Redis it
    cannot reach with :class:`~celery_events.locks.LockStoreUnavailableError`. Later, a Redis it
    cannot reach counts as a lost lock: the scheduler waits until it holds the lock again.

    .. versionadded:: 0.1.0
    """

    #: Celery's default is 300 s. A tick at least every 15 s renews the lock often enough for a
    #: LOCK_TIMEOUT of a minute, so that a standby takes over within about a minute.
    #: ``beat_max_loop_interval`` or ``--max-interval`` override it.
    max_interval = 15

    _beat_lock: BeatLock
    _holds_lock: bool = False
    _waiting_for: str | None = None

    def setup_schedule(self) -> None:
        """Check the settings, try to take the lock, then open the schedule.

        Raises:
            ImproperlyConfigured: the cache is not in Redis, ``LOCK_TIMEOUT`` is not greater
                than ``max_interval``, or a setting it reads has a bad value (``LOCK_SLEEP`` of 0
                or less...: see :mod:`celery_events.config`).
            LockStoreUnavailableError: the cache's Redis cannot be reached.
        """
        self._beat_lock = self._make_beat_lock()
        last_runs = self._beat_lock.take()
        try:
            super().setup_schedule()
        except BaseException:
            self._holds_lock = last_runs is not None  # give back the lock taken above
            self._release_lock()
            raise
        self._hold(last_runs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Renew (or try to take) the lock, then run a tick of PersistentScheduler if held.

        Returns:
            Seconds until the next tick: ``LOCK_SLEEP`` while this beat waits for the lock.
        """
        if not self._renew_or_take():
            return float(settings.LOCK_SLEEP)
        try:
            return float(super().tick(*args, **kwargs))
        except _LockLostError:
            self._wait("it was lost just before a send")
            return float(settings.LOCK_SLEEP)

    def reserve(self, entry: ScheduleEntry) -> ScheduleEntry:  # type: ignore[override]  # celery-types says event_t
        """Advance ``entry`` and record its run beside the lock, or refuse the send.

        Raises:
            _LockLostError: this beat no longer holds the lock; ``entry`` is left as it was.
        """
        new_entry = cast("ScheduleEntry", super().reserve(entry))
        # Celery names every entry of a schedule and sets the run time of the one it advances.
        name, when = cast("str", entry.name), cast("datetime", new_entry.last_run_at)
        try:
            recorded = self._beat_lock.record_run(name, when, self._last_runs_ttl())
        except LockStoreUnavailableError:
            recorded = False
        if not recorded:
            self.schedule[name] = entry
            raise _LockLostError
        return new_entry

    def close(self) -> None:
        """Sync and close the schedule, then release the lock if this beat still holds it."""
        try:
            super().close()
        finally:
            self._release_lock()

    def _make_beat_lock(self) -> BeatLock:
        """Return the beat lock of the ``CACHE_NAME`` cache, after checking the settings.

        Raises:
            ImproperlyConfigured: see :meth:`setup_schedule`.
        """
        timeout = float(settings.LOCK_TIMEOUT)
        if timeout <= self.max_interval:
            msg = (
                f"{SETTING_PREFIX}LOCK_TIMEOUT ({timeout:g} s) must be greater than the beat's "
                f"max interval ({self.max_interval:g} s), or the lock expires between two ticks "
                "of the beat that holds it: raise LOCK_TIMEOUT or lower beat_max_loop_interval"
            )
            raise ImproperlyConfigured(msg)
        # Read now, though used only while waiting: a refused value stops beat as it starts.
        settings.LOCK_SLEEP  # noqa: B018
        cache_name = settings.CACHE_NAME
        cache = caches[cache_name]
        binding = redis_binding(cache, cache_name)
        if binding is None:
            backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
            msg = (
                f"LockedPersistentScheduler keeps its lock in Redis, but cache {cache_name!r} "
                f"({SETTING_PREFIX}CACHE_NAME) is a {backend}: use "
                "django.core.cache.backends.redis.RedisCache, django_redis.cache.RedisCache, "
                "or celery_events.cache.RedisClusterCache or RedisSentinelCache"
            )
            raise ImproperlyConfigured(msg)
        return BeatLock(binding, settings.BEATER_LOCK_KEY, timeout)

    def _renew_or_take(self) -> bool:
        """Return whether this beat holds the lock now, renewing or taking it."""
        lock = self._beat_lock
        try:
            if self._holds_lock:
                if lock.renew(self._last_runs_ttl()):
                    return True
                self._wait("another beat took it, or it expired")
            self._hold(lock.take())
        except LockStoreUnavailableError as exc:
            self._wait(str(exc))
        return self._holds_lock

    def _last_runs_ttl(self) -> float:
        """Return the seconds for which the runs recorded beside the lock can still matter.

        A recorded run keeps the beat that takes over from sending its entry again before the
        entry is next due; once the latest next due time of the schedule's entries has passed, no
        recorded run changes what a beat sends. The lock's own time to live is the least.
        """
        # is_due() is (is_due, seconds until the next due time): celery-types has it as a tuple.
        return max((float(entry.is_due()[1]) for entry in self.schedule.values()), default=0.0)

    def _hold(self, last_runs: dict[str, datetime] | None) -> None:
        """Schedule from ``last_runs`` when the lock was taken (None: another beat holds it)."""
        if last_runs is None:
            self._wait("another beat holds it")
        elif not self._holds_lock:
            self._start_from(last_runs)
            self._holds_lock, self._waiting_for = True, None
            logger.info("beat: holds lock %r; scheduling", self._beat_lock.name)

    def _start_from(self, last_runs: dict[str, datetime]) -> None:
        """Take the later of each entry's own last run and the one recorded beside the lock."""
        for name, entry in self.schedule.items():
            when = last_runs.get(name)
            own = entry.last_run_at
            if when is not None and (own is None or when > maybe_make_aware(own)):
                entry.last_run_at = when
        self._heap = None  # rebuilt from the entries on the next tick

    def _wait(self, reason: str) -> None:
        """Stop scheduling, if this beat was, and wait for the lock; log when the reason changes."""
        name = self._beat_lock.name
        if self._holds_lock:
            logger.warning(
                "beat: lost lock %r (%s); stops sending until it holds the lock again", name, reason
            )
        elif reason != self._waiting_for:
            logger.info(
                "beat: waits for lock %r (%s); polls every %g s", name, reason, settings.LOCK_SLEEP
            )
        self._holds_lock, self._waiting_for = False, reason

    def _release_lock(self) -> None:
        """Release the lock if this beat holds it; log, never raise, when it cannot."""
        if not self._holds_lock:
            return
        self._holds_lock = False
        lock = self._beat_lock
        try:
            if not lock.release():
                logger.info("beat: lock %r was already lost", lock.name)
        except LockStoreUnavailableError:
            logger.warning(
                "beat: could not release lock %r; it expires on its own", lock.name, exc_info=True
            )
