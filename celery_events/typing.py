"""The shapes the way of a call and its extension points are written against.

:class:`CalledTask` is a task as the caller's and the worker's way of a call
(:mod:`celery_events.caller`, :mod:`celery_events.worker`) and the option rules
(:mod:`celery_events.options`) see it: :class:`~celery_events.task.DjangoTask`'s options, hooks
and seams, and the few parts of Celery's task they use. Written here, below them, so that no
module of the way of a call imports the task class that composes it.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from datetime import timedelta

    from celery import Celery
    from celery.app.task import Context
    from celery.canvas import Signature
    from celery.exceptions import TimeoutError  # noqa: A004 - what Celery raises
    from celery.result import AsyncResult

    from .results import ResultWrapper

__all__ = ["CalledTask", "UniqueKeyGenerator"]

UniqueKeyGenerator: TypeAlias = Callable[
    [Any, str, "Sequence[Any] | None", "Mapping[str, Any] | None"], str
]
"""A function ``(task, prefix, task_args, task_kwargs) -> key`` mapping a call to a cache key.

Set it as a task attribute (``unique_key_generator=...``): it is then called as a bound method,
``task.unique_key_generator(prefix, task_args, task_kwargs)``.
"""


class CalledTask(Protocol):
    """A DjangoTask, as the way of one call uses it."""

    # Celery's task.
    @property
    def name(self) -> str:
        """The task's name."""

    @property
    def app(self) -> Celery:
        """The task's Celery app."""

    @property
    def backend(self) -> Any:
        """The task's result backend."""

    @property
    def request_stack(self) -> Any:
        """The stack of the requests of the attempts running in this thread."""

    @property
    def serializer(self) -> str:
        """The serializer of the task's messages."""

    @property
    def time_limit(self) -> float | None:
        """The task's hard time limit, seconds."""

    @property
    def soft_time_limit(self) -> float | None:
        """The task's soft time limit, seconds."""

    @property
    def max_retries(self) -> int | None:
        """How many retries the task allows."""

    @property
    def default_retry_delay(self) -> float:
        """Seconds before a retry, without ``default_retry_delays``."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task's body."""

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult[Any]:  # noqa: N802 - Celery's
        """The result of task ``task_id`` in the task's backend."""

    def signature_from_request(
        self, request: Context | None = ..., **extra_options: Any
    ) -> Signature[Any]:
        """A signature of the attempt of ``request``, for publishing it again."""

    # DjangoTask's options.
    @property
    def unique(self) -> bool:
        """Whether a call takes a lock on its arguments."""

    @property
    def stale_time_limit(self) -> float | None:
        """How long a lock outlives a holder that stopped, seconds."""

    @property
    def max_queue_waiting_time(self) -> float | None:
        """With a time limit, derives ``stale_time_limit``."""

    @property
    def default_retry_delays(self) -> Sequence[float] | None:
        """Seconds before each retry."""

    @property
    def ignore_task_after_success(self) -> bool:
        """Whether a success opens the call's ignore window."""

    @property
    def ignore_task_timedelta(self) -> timedelta | float | None:
        """How long an ignore window stays open."""

    @property
    def result_wrapper_class(self) -> type[ResultWrapper]:
        """What a call returns."""

    _routed_queue_cache: tuple[Any, str] | None
    """The router and the queue it gave, while routes go by the task's name."""

    # DjangoTask's hooks: each takes the arguments of the event of the same name.
    def on_invocation_apply(self, *args: Any, **kwargs: Any) -> None:
        """The call was applied."""

    def on_invocation_trigger(self, *args: Any, **kwargs: Any) -> None:
        """The call triggered."""

    def on_invocation_unique(self, *args: Any, **kwargs: Any) -> None:
        """The call joined the holder of its lock."""

    def on_invocation_ignored(self, *args: Any, **kwargs: Any) -> None:
        """The call was ignored."""

    def on_invocation_failure(self, *args: Any, **kwargs: Any) -> None:
        """The call could not be triggered or published."""

    def on_invocation_timeout(self, *args: Any, **kwargs: Any) -> None:
        """A wait for the call's result ran out."""

    def on_task_start(self, *args: Any, **kwargs: Any) -> None:
        """An attempt starts."""

    # DjangoTask's seams, those of django-celery-extensions.
    def _get_unique_key(self, task_args: Any, task_kwargs: Any) -> str | None:
        """The lock key of a call with these arguments; None when not unique."""

    def _get_ignore_key(self, task_args: Any, task_kwargs: Any) -> str:
        """The ignore window's key of a call with these arguments."""

    def _apply_and_get_result(
        self,
        result: ResultWrapper,
        args: Any,
        kwargs: Any,
        invocation_id: str,
        is_async: bool = ...,
        **options: Any,
    ) -> Any:
        """Publish a call's message, or run it here."""

    def _invocation_timed_out(self, result: ResultWrapper, ex: TimeoutError) -> None:
        """Send ``invocation_timeout``."""
