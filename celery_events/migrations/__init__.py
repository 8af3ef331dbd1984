"""The migrations of celery_events: the admin's unmanaged model, no table."""
