"""Django management commands of celery-events."""
