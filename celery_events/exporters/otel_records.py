"""What the OpenTelemetry exporter keeps of a call or an attempt between the signals that tell it.

A call is kept from apply to its outcome (:data:`Call`), a triggered call from its trigger until
the broker has taken its message (:class:`Publish`), and an attempt while it runs
(:class:`Attempt`), each in an :class:`~celery_events.exporters.base.InFlight` of the exporter.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping
    from contextvars import Token

    from celery import Task
    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AnyValue

__all__ = ["Attempt", "Call", "Publish"]


Call: TypeAlias = "tuple[str, int, Context, dict[str, AnyValue]]"
"""A call between apply and its outcome: its span's name, start (``time.time_ns()``), parent
context and attributes. The span is started at the outcome, when it is known whose span the
call's publish is (the instrumentor's or ours)."""


class Publish:
    """A triggered call between its trigger and the broker taking its message.

    Args:
        task: the task called.
        call: the call, its outcome known.
        metric: the attributes of its sent message's metric point and of its publish's.
        headers: the headers of its message, where its trace context is written.
        span: the exporter's own PRODUCER span of the call; None beside the instrumentor, whose
            span of the publish is set here once found.
    """

    __slots__ = ("call", "headers", "metric", "owned", "span", "start", "task")

    def __init__(
        self,
        task: Task[Any, Any],
        call: Call,
        metric: tuple[Mapping[str, AnyValue], Mapping[str, AnyValue]],
        headers: MutableMapping[str, Any],
        span: Span | None,
    ) -> None:
        self.task = task
        self.call = call
        self.metric = metric
        self.headers = headers
        self.span = span
        self.owned = span is not None
        """Whether the span is the exporter's own (else the instrumentor's, once found)."""
        self.start = time.perf_counter()


class Attempt:
    """A running attempt: its span, whether it is the exporter's own, and what ends it.

    Args:
        span: the attempt's CONSUMER span, the exporter's or the instrumentor's.
        token: the token of the context the exporter attached; None on the instrumentor's span.
        carried: the trace context its message carried.
        metric: the attributes of its consumed message's metric point.
    """

    __slots__ = ("carried", "metric", "span", "start", "token")

    def __init__(
        self,
        span: Span,
        token: Token[Context] | None,
        carried: Context,
        metric: Mapping[str, AnyValue],
    ) -> None:
        self.span = span
        self.token = token
        """The token of the context the exporter attached; None on the instrumentor's span."""
        self.carried = carried
        self.metric = metric
        self.start = time.perf_counter()
