"""The version of celery-events."""

__version__ = "0.1.0"
