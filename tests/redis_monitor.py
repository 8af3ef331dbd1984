"""What a Redis server is sent, read with MONITOR: one command per round trip, scripts apart.

Used by the lock tests and by ``python -m benchmarks.lock_commands``.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass
class Commands:
    """Command names, in the order the server ran them."""

    sent: list[str] = field(default_factory=list)
    """Sent by clients: one a round trip."""
    in_scripts: list[str] = field(default_factory=list)
    """Run by the scripts that clients sent (MONITOR's client type "lua")."""


@contextmanager
def monitored(url: str) -> Iterator[Commands]:
    """Fill the yielded Commands with what the server at ``url`` ran during the block.

    Use a server that nothing else talks to.
    """
    watcher, marker_sender = redis.Redis.from_url(url), redis.Redis.from_url(url)
    marker_sender.ping()  # connected now, so that its handshake is not in the list
    marker = f"end-of-block-{uuid.uuid4()}"
    commands = Commands()
    with watcher, marker_sender, watcher.monitor() as monitor:
        yield commands
        marker_sender.echo(marker)
        for command in monitor.listen():
            if command["command"] == f"ECHO {marker}":
                break
            name = command["command"].split()[0]
            (commands.in_scripts if command["client_type"] == "lua" else commands.sent).append(name)
