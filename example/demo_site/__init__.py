"""The demo's Django project: settings and the Celery app."""
