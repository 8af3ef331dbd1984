"""The demo's Celery app: its tasks are DjangoTasks, configured by the CELERY_* Django settings."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import setup_logging

from celery_events.celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

app = Celery("demo_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def keep_django_logging(**kwargs: Any) -> None:
    """Leave logging to Django's LOGGING setting: with a receiver here, Celery configures none."""
