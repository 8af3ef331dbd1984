"""The EXPORTERS setting with options, as docs/exporters.md shows it."""

# [start:options]
DJANGO_CELERY_EXTENSIONS_EXPORTERS = {
    "structlog": {"levels": {"task_retrying": "info"}, "log_args": True},
    "opentelemetry": {"link_to_producer": True},
}
# [end:options]
