"""One step of ``SCAN`` over a Redis or a Redis Cluster, from a cursor a page can carry.

The listing of held keys (:mod:`celery_events.locks.listing`) walks the keyspace a page at a time
and hands the cursor to the next page through a URL or a command's option: a cursor is text, and
one that Redis would refuse is refused here, naming what a cursor is.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Final, cast

from redis.cluster import RedisCluster

if TYPE_CHECKING:
    from collections.abc import Callable

    from .redis_cache import RedisClient

__all__ = ["scan_step"]

#: A ``SCAN`` cursor: a whole number that Redis keeps in 64 bits.
_SCAN_CURSOR: Final = re.compile(r"[0-9]{1,20}")
_SCAN_CURSOR_MAX: Final = 2**64 - 1


def scan_step(
    client: RedisClient, cursor: str | None, pattern: str, count: int
) -> tuple[str | None, list[bytes | str]]:
    """Run one ``SCAN`` step from ``cursor`` (None: the start); return the next one and the keys.

    The cursor is a text, None once the keyspace has been walked. A Redis Cluster has a cursor
    per primary, so its text is the JSON of the primaries' names and cursors not yet done.

    Raises:
        ValueError: ``cursor`` is not a cursor this function returned for ``client``; the
            message says what a cursor is, to follow "cursor '...' is".
    """
    if isinstance(client, RedisCluster):
        return _scan_cluster_step(client, cursor, pattern, count)
    position = 0 if cursor is None else _position(cursor)
    if position is None:
        msg = f"not a SCAN cursor (a whole number from 0 to {_SCAN_CURSOR_MAX})"
        raise ValueError(msg)
    position, keys = client.scan(cursor=position, match=pattern, count=count)
    return (str(position) if position else None), keys


def _position(cursor: object) -> int | None:
    """Return a ``SCAN`` cursor's position, or None when it is not one Redis takes."""
    if isinstance(cursor, int) and not isinstance(cursor, bool):
        position = cursor
    elif isinstance(cursor, str) and _SCAN_CURSOR.fullmatch(cursor):
        position = int(cursor)
    else:
        return None
    return position if 0 <= position <= _SCAN_CURSOR_MAX else None


def _scan_cluster_step(
    client: RedisCluster, cursor: str | None, pattern: str, count: int
) -> tuple[str | None, list[bytes | str]]:
    # redis-py types RedisCluster.scan as Redis.scan; on a cluster it answers the cursor of
    # each primary it asked, by the primary's name.
    scan = cast("Callable[..., tuple[dict[str, int], list[bytes | str]]]", client.scan)
    cursors: dict[str, int] = {}
    keys: list[bytes | str] = []
    if cursor is None:
        cursors, keys = scan(match=pattern, count=count)  # every primary, from 0
    else:
        try:
            positions = json.loads(cursor)
        except (ValueError, RecursionError):
            positions = None
        nodes = {}
        if isinstance(positions, dict) and all(
            isinstance(name, str) and _position(position) is not None
            for name, position in positions.items()
        ):
            nodes = {
                name: client.get_node(node_name=name)  # type: ignore[no-untyped-call]
                for name in positions
            }
        if not nodes or None in nodes.values():
            msg = "not a SCAN cursor of this Redis Cluster's primaries"
            raise ValueError(msg)
        for name, node in nodes.items():
            step, found = scan(
                cursor=positions[name], match=pattern, count=count, target_nodes=node
            )
            cursors.update(step)
            keys += found
    going_on = {name: position for name, position in cursors.items() if position}
    return (json.dumps(going_on) if going_on else None), keys
