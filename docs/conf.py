"""Sphinx configuration of the celery-events documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import django
from docutils import nodes

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS)]

# autodoc imports celery_events, whose modules need configured Django settings: a minimal
# settings module of the docs' own (no database, no Redis is touched while building).
os.environ["DJANGO_SETTINGS_MODULE"] = "docs_settings"
django.setup()

from celery import Task  # noqa: E402 - after django.setup()

from celery_events import __version__  # noqa: E402
from celery_events.signals import EventSignal  # noqa: E402
from celery_events.task import DjangoTask  # noqa: E402

project = "celery-events"
author = "celery-events developers"
copyright = "celery-events developers"
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"celery-events {release}"
html_static_path = ["_static"]

# Pages written alongside the others, listed in the index's toctree: until one exists, its
# entry is left out of the toctree (see _leave_out_missing_pages) rather than failing the build.
OPTIONAL_PAGES = ("locks", "exporters", "performance", "operations")

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Every reference must resolve, except to the libraries we build on: their inventories are on
# the network, and the docs are built without one.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:(class|exc|obj|data|func|meth)", r"(celery|kombu|billiard|django|blinker)(\..*)?"),
    (r"py:(class|obj|data)", r"(collections\.abc|typing|datetime|enum|types)\..*"),
    (r"py:(class|obj)", r"(Any|Callable|Mapping|Sequence|Iterator|TypeAlias|F|Final)"),
    (r"py:(class|exc)", r"(CeleryError|TimeoutError|Retry|ImproperlyConfigured)"),
    (r"py:class", r"(Task|AsyncResult|EagerResult|Context|ExceptionInfo|BaseCache|AppConfig)"),
    (r"py:class", r"Signature"),  # Celery's, unqualified in hints
    (r"py:class", r"(CheckMessage|NamedSignal|Namespace|Proxy|_TimeoutListener|_EventNamespace)"),
    (r"py:class", r"(str|int|float|bool|bytes|list|dict|tuple|type|object|None|Enum|timedelta)"),
    (r"py:class", r"(datetime|BaseException|Exception|RuntimeError|AttributeError)"),
    (r"py:class", r"celery_events\.signals\.F"),  # a TypeVar
    (r"py:class", r"RedisBinding"),  # of celery_events.locks.redis_cache, not public
    (r"py:class", r"(HttpRequest|HttpResponse|URLPattern)"),  # Django's, unqualified in hints
    (r"py:exc", r"(PermissionDenied|SuspiciousOperation)"),  # Django's, in Raises sections
    (r"py:class", r"(CallArguments|KeyKind)"),  # TypeAliases of celery_events.locks, in hints
]


def _signal_docstring(
    app: Any,  # noqa: ARG001 - Sphinx's event signature
    what: str,
    name: str,  # noqa: ARG001
    obj: Any,
    options: Any,  # noqa: ARG001
    lines: list[str],
) -> None:
    """Show each signal's own ``doc`` as its docstring: plain text, so ``*`` is escaped."""
    if what not in {"data", "attribute"} or not isinstance(obj, EventSignal):
        return
    if not lines and obj.__doc__:
        lines.extend(line.strip() for line in obj.__doc__.strip().splitlines())
    lines[:] = [line.replace("*", r"\*") for line in lines]


_PROSE_ATTRIBUTE_DOCS: dict[int, list[str]] = {}


def _keep_attribute_prose(
    app: Any,  # noqa: ARG001 - Sphinx's event signature
    what: str,
    name: str,  # noqa: ARG001
    obj: Any,  # noqa: ARG001
    options: Any,  # noqa: ARG001
    lines: list[str],
) -> None:
    """Before napoleon: remember an attribute docstring whose first line has a colon.

    Napoleon reads "Text: more text" in an attribute's docstring as "type: description"; ours
    are prose (the types are annotations), so :func:`_restore_attribute_prose` puts them back.
    """
    if what in {"attribute", "data", "property"} and lines and ":" in lines[0]:
        _PROSE_ATTRIBUTE_DOCS[id(lines)] = list(lines)


def _restore_attribute_prose(
    app: Any,  # noqa: ARG001 - Sphinx's event signature
    what: str,  # noqa: ARG001
    name: str,  # noqa: ARG001
    obj: Any,  # noqa: ARG001
    options: Any,  # noqa: ARG001
    lines: list[str],
) -> None:
    """After napoleon: restore what :func:`_keep_attribute_prose` remembered."""
    original = _PROSE_ATTRIBUTE_DOCS.pop(id(lines), None)
    if original is not None:
        lines[:] = original


# DjangoTask's own names, read before autodoc touches the class: Celery binds a task class the
# first time its ``app`` is read, which copies Celery's defaults (time_limit...) onto it.
_DJANGO_TASK_NAMES = frozenset(vars(DjangoTask))


def _skip_celery_task_attributes(
    app: Any,  # noqa: ARG001 - Sphinx's event signature
    what: str,
    name: str,
    obj: Any,  # noqa: ARG001
    skip: bool,  # noqa: ARG001
    options: Any,  # noqa: ARG001
) -> bool | None:
    """Leave Celery's own Task attributes to Celery's docs; document what DjangoTask defines."""
    if what == "class" and name in vars(Task) and name not in _DJANGO_TASK_NAMES:
        return True
    return None


def _leave_out_missing_pages(
    app: Any,  # noqa: ARG001 - Sphinx's event signature
    docname: str,
    source: list[str],
) -> None:
    """Drop the index's toctree entries of optional pages that do not exist yet."""
    if docname != "index":
        return
    missing = {page for page in OPTIONAL_PAGES if not (DOCS / f"{page}.md").exists()}
    lines = source[0].splitlines(keepends=True)
    source[0] = "".join(line for line in lines if line.strip() not in missing)


def _reread_index(
    app: Any,  # noqa: ARG001 - Sphinx's event signature
    env: Any,  # noqa: ARG001
    added: set[str],  # noqa: ARG001
    changed: set[str],  # noqa: ARG001
    removed: set[str],  # noqa: ARG001
) -> list[str]:
    """Read the index again on every build: its toctree depends on which pages exist."""
    return ["index"]


def _trim_included_examples(
    app: Any,  # noqa: ARG001 - Sphinx's event signature
    doctree: nodes.document,
) -> None:
    """Drop the blank lines that end an example's section (the formatter puts them there)."""
    for block in doctree.findall(nodes.literal_block):
        text = block.astext()
        if text != text.rstrip("\n"):
            trimmed = text.rstrip("\n")
            block.children = [nodes.Text(trimmed)]
            block.rawsource = trimmed


def setup(app: Any) -> None:
    """Register the docs' own small extensions."""
    app.connect("autodoc-process-docstring", _keep_attribute_prose, priority=400)
    app.connect("autodoc-process-docstring", _restore_attribute_prose, priority=600)
    app.connect("autodoc-process-docstring", _signal_docstring)
    app.connect("autodoc-skip-member", _skip_celery_task_attributes)
    app.connect("source-read", _leave_out_missing_pages)
    app.connect("env-get-outdated", _reread_index)
    app.connect("doctree-read", _trim_included_examples)
