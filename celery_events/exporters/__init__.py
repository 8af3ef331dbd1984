"""Exporters: built-in subscribers of the event bus, switched on by the EXPORTERS setting.

The setting ``DJANGO_CELERY_EXTENSIONS_EXPORTERS`` is a list of exporter names or dotted paths
to exporter classes, or a dict of name -> options::

    DJANGO_CELERY_EXTENSIONS_EXPORTERS = ["structlog", "opentelemetry"]
    DJANGO_CELERY_EXTENSIONS_EXPORTERS = {
        "structlog": {"log_args": True},
        "opentelemetry": {"link_to_producer": True},
    }

The app connects them when Django starts (web processes and workers alike) and again whenever
the setting changes (``override_settings``). It is empty by default: nothing is connected, and
sending an event then costs one attribute check.
"""

from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from celery_events.config import SETTING_PREFIX, exporter_entries

from .base import Exporter

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "BUILTIN_EXPORTERS",
    "Exporter",
    "build_exporters",
    "connect_exporters",
    "disconnect_exporters",
]

BUILTIN_EXPORTERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "opentelemetry": "celery_events.exporters.opentelemetry.OpenTelemetryExporter",
        "structlog": "celery_events.exporters.structlog.StructlogExporter",
    }
)
"""The exporters known by name, each the dotted path of its class (imported only when named)."""

_SETTING: Final = f"{SETTING_PREFIX}EXPORTERS"


def build_exporters(setting: object) -> tuple[Exporter, ...]:
    """Build, without connecting them, the exporters a value of the EXPORTERS setting names.

    Args:
        setting: the setting's value: a list of names or a dict of name -> options.

    Raises:
        ImproperlyConfigured: the value is not a list or dict, names an unknown exporter (the
            message lists the known ones), or gives an exporter an unknown or bad option.
    """
    return tuple(_build(name, options) for name, options in exporter_entries(setting))


def connect_exporters(setting: object) -> tuple[Exporter, ...]:
    """Build every exporter a value of the EXPORTERS setting names, then connect them.

    Nothing is connected unless every exporter could be built.

    Args:
        setting: the setting's value: a list of names or a dict of name -> options.

    Returns:
        The connected exporters, for :func:`disconnect_exporters`.

    Raises:
        ImproperlyConfigured: the value is not a list or dict, names an unknown exporter (the
            message lists the known ones), or gives an exporter an unknown or bad option.
    """
    exporters = build_exporters(setting)
    for exporter in exporters:
        exporter.connect()
    return exporters


def disconnect_exporters(exporters: Iterable[Exporter]) -> None:
    """Disconnect exporters that :func:`connect_exporters` connected.

    Args:
        exporters: the exporters to disconnect.
    """
    for exporter in exporters:
        exporter.disconnect()


def _build(name: str, options: Mapping[str, Any]) -> Exporter:
    exporter_class = _exporter_class(name)
    parameters = inspect.signature(exporter_class).parameters
    takes_any = any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters.values())
    unknown = [option for option in options if option not in parameters]
    if unknown and not takes_any:
        msg = (
            f"exporter {name!r} has no option {unknown[0]!r}; "
            f"its options are: {', '.join(parameters) or 'none'}"
        )
        raise ImproperlyConfigured(msg)
    exporter: Exporter = exporter_class(**options)
    return exporter


def _exporter_class(name: str) -> Any:
    path = BUILTIN_EXPORTERS.get(name, name)
    known = ", ".join(BUILTIN_EXPORTERS)
    if "." not in path:
        msg = (
            f"unknown exporter {name!r} in {_SETTING}: the known exporters are {known}, "
            "or give the dotted path of an exporter class"
        )
        raise ImproperlyConfigured(msg)
    try:
        exporter_class = import_string(path)
    except ImportError as exc:
        msg = (
            f"cannot import exporter {name!r} in {_SETTING} ({exc}): the known exporters are "
            f"{known}, or give the dotted path of an exporter class"
        )
        raise ImproperlyConfigured(msg) from exc
    if not (
        inspect.isclass(exporter_class)
        and callable(getattr(exporter_class, "connect", None))
        and callable(getattr(exporter_class, "disconnect", None))
    ):
        msg = (
            f"exporter {name!r} in {_SETTING} is not an exporter class: "
            "it needs connect() and disconnect() methods"
        )
        raise ImproperlyConfigured(msg)
    return exporter_class
