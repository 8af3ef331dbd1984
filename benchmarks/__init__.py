"""The performance harness of celery-events: run ``python -m benchmarks`` (``make bench``)."""
