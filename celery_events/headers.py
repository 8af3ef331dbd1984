"""The message headers a DjangoTask call carries to the worker.

A triggered call is published with its invocation id, and with the keys of its unique lock and
ignore window when it has them, so that the worker releases exactly the key the caller took and
every event of the call, on both sides and across retries, carries the same invocation id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from celery.app.task import Context

__all__ = [
    "CARRIED_HEADERS",
    "IGNORE_KEY_HEADER",
    "INVOCATION_ID_HEADER",
    "UNIQUE_KEY_HEADER",
    "read_header",
]

INVOCATION_ID_HEADER: Final = "invocation_id"
"""The id that every event of one call carries, from the caller's apply to the last attempt."""
UNIQUE_KEY_HEADER: Final = "unique_key"
"""The unique lock's key, so the worker releases exactly the key the caller took."""
IGNORE_KEY_HEADER: Final = "ignore_key"
"""The ignore window's key, opened by the worker after a success."""
CARRIED_HEADERS: Final = (INVOCATION_ID_HEADER, UNIQUE_KEY_HEADER, IGNORE_KEY_HEADER)
"""The headers a retry re-publishes with."""


def read_header(request: Context, name: str) -> Any:
    """Return the custom header ``name`` of the running task's message, or None.

    A worker puts custom headers on the request as attributes; ``apply`` (eager) keeps them in
    ``request.headers``. Both are looked at.

    Args:
        request: the task's request (``task.request``).
        name: the header's name.
    """
    value = getattr(request, name, None)
    if value is None and request.headers:
        value = request.headers.get(name)
    return value
