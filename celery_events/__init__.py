"""celery-events: Celery tasks for Django, with every task call on a signal bus.

The task base class is :class:`celery_events.task.DjangoTask`; the signals are in
:mod:`celery_events.signals`. Add ``'celery_events'`` to ``INSTALLED_APPS``.
"""

from __future__ import annotations

from . import installed  # noqa: F401 - registers celery_events.E005, which needs no app
from .__about__ import __version__

__all__ = ["__version__"]
