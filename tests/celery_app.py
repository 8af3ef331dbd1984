"""The Celery app of the test suite and of its worker subprocesses."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from celery_events.celery import Celery

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tests"], related_name="tasks")
