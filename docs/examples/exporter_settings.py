"""The EXPORTERS setting as docs/exporters.md shows it, in its two forms."""

# [start:names]
DJANGO_CELERY_EXTENSIONS_EXPORTERS = ["structlog", "opentelemetry"]
# [end:names]
