"""The demo's Django project: settings, URLs (the admin's) and the Celery app."""

# Loaded whenever Django starts (manage.py, a worker, demo.py), so that the project's Celery app
# is the current one: manage.py celery_events finds the tasks there.
from .celery import app as celery_app

__all__ = ("celery_app",)
