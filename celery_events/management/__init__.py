"""Django management commands of celery-events (``manage.py celery_events``)."""
