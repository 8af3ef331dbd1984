"""Where a running task's trace context is read from: its message's headers, on ``task.request``.

OpenTelemetry's propagators read a carrier through a getter. The headers a call writes its
context into are a plain mapping, which the default getter reads; where the task runs they are
those of ``task.request``, which :data:`REQUEST_HEADERS` reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.propagators.textmap import Getter

from celery_events.headers import read_header

if TYPE_CHECKING:
    from celery.app.task import Context as Request

__all__ = ["REQUEST_HEADERS"]


class _RequestHeaders(Getter["Request"]):
    """Reads trace context from the running task's message headers (``task.request``)."""

    def get(self, carrier: Request, key: str) -> list[str] | None:
        value = read_header(carrier, key)
        return None if value is None else [str(value)]

    def keys(self, carrier: Request) -> list[str]:
        return list(carrier.headers or ())


REQUEST_HEADERS = _RequestHeaders()
"""The getter of ``propagate.extract`` for a running task's request."""
