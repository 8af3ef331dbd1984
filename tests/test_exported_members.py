"""Each public module's __all__ is exactly its public surface."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "celery_events.beat",
    "celery_events.cleanup",
    "celery_events.exporters",
    "celery_events.exporters.base",
    "celery_events.exporters.opentelemetry",
    "celery_events.exporters.otel_attributes",
    "celery_events.exporters.otel_context",
    "celery_events.exporters.otel_metrics",
    "celery_events.exporters.otel_neighbour",
    "celery_events.exporters.otel_records",
    "celery_events.exporters.semconv",
    "celery_events.exporters.span_tree",
    "celery_events.exporters.structlog",
    "celery_events.locks.base",
    "celery_events.locks.beat_lock",
    "celery_events.locks.cache_store",
    "celery_events.locks.index",
    "celery_events.locks.leases",
    "celery_events.locks.listing",
    "celery_events.locks.redis_cache",
    "celery_events.locks.redis_store",
    "celery_events.locks.scan",
    "celery_events.locks.scripts",
    "celery_events.locks.values",
    "celery_events.management.commands.celery_events",
    "celery_events.operations",
    "celery_events.operator_input",
    "celery_events.operator_text",
    "celery_events",
    "celery_events.admin",
    "celery_events.apps",
    "celery_events.cache",
    "celery_events.caller",
    "celery_events.celery",
    "celery_events.checks",
    "celery_events.commands",
    "celery_events.config",
    "celery_events.headers",
    "celery_events.hooks",
    "celery_events.installed",
    "celery_events.keys",
    "celery_events.locks",
    "celery_events.models",
    "celery_events.options",
    "celery_events.outcomes",
    "celery_events.request",
    "celery_events.results",
    "celery_events.retries",
    "celery_events.signals",
    "celery_events.stand_ins",
    "celery_events.task",
    "celery_events.testing",
    "celery_events.typing",
    "celery_events.windows",
    "celery_events.worker",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_all_lists_every_public_class_and_function_defined_in_the_module(module_name):
    module = importlib.import_module(module_name)
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module_name
    }

    assert defined <= set(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


def test_design_import_paths_exist():
    from celery_events.beat import LockedPersistentScheduler  # noqa: F401, PLC0415
    from celery_events.celery import Celery, CeleryQueueEnum  # noqa: F401, PLC0415
    from celery_events.config import settings  # noqa: F401, PLC0415
    from celery_events.task import (  # noqa: F401, PLC0415
        DjangoTask,
        IgnoredResult,
        NotTriggeredCeleryError,
        ResultWrapper,
        default_unique_key_generator,
        get_django_command_task,
    )
    from celery_events.testing import capture_events  # noqa: F401, PLC0415
