"""The Django admin section: see, explain and release unique locks and ignore windows.

Registered on Django's default admin site for :class:`~celery_events.models.HeldLock`; staff with
``celery_events.view_heldlock`` see the list and the explain page, and those who also have
``celery_events.release_heldlock`` release keys, after a confirmation page, each owner-checked as
``manage.py celery_events release`` does, and logged in the admin log under their name.

The list walks the lock store's index with ``SCAN`` a page at a time
(:func:`celery_events.operations.held_page`). A key offered for release travels to the
confirmation page and back signed (``django.core.signing``), so a release names only keys this
admin listed, with the holder it read.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.core.cache import InvalidCacheBackendError
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from . import operations
from .config import settings
from .locks import LockStoreUnavailableError, RedisLockStore, get_lock_store
from .models import HeldLock
from .operations import HeldKey, OperationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from django.http import HttpRequest, HttpResponse
    from django.urls import URLPattern

__all__ = ["HeldLockAdmin"]

#: The salt of the signed keys of the release form: a signature made for anything else fails.
_RELEASE_SALT: Final = "celery_events.admin.release"

#: What a page shows as its error rather than fail with: bad input, a cache that cannot answer
#: (Redis unreachable, or CACHE_NAME naming no cache, which check E003 also reports).
_UNANSWERED: Final = (OperationError, LockStoreUnavailableError, InvalidCacheBackendError)


@admin.register(HeldLock)
class HeldLockAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The held locks and open ignore windows of the lock store, with explain and release."""

    #: How many keys a page of the list aims at.
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Return False: locks are taken by calls, not by hand."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Return False: a lock is released (:meth:`has_release_permission`), not edited."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Return False: releasing has a permission of its own (:meth:`has_release_permission`)."""
        return False

    def has_release_permission(self, request: HttpRequest) -> bool:
        """Return whether the user may release locks and ignore windows."""
        return request.user.has_perm(f"{self.opts.app_label}.release_{self.opts.model_name}")

    def get_urls(self) -> list[URLPattern]:
        """Return the list, explain and release pages; nothing per object."""
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("", view(self.changelist_view), name=f"{name}_changelist"),
            path("explain/", view(self.explain_view), name=f"{name}_explain"),
            path("release/", view(self.release_view), name=f"{name}_release"),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Show a page of held locks and open ignore windows: filtered, searched, from a cursor."""
        self._check_view_permission(request)
        task_name = request.GET.get("task") or None
        kind = request.GET.get("kind") or None
        search = request.GET.get("q", "").strip() or None
        cursor = request.GET.get("cursor") or None
        error = None
        keys: list[HeldKey] = []
        next_cursor = None
        try:
            if kind not in (None, *operations.KIND_NAMES):
                error = f"kind {kind!r} is not one of {', '.join(operations.KIND_NAMES)}"
            elif not isinstance(get_lock_store(), RedisLockStore):
                error = _cannot_list_text()
            else:
                page = operations.held_page(
                    cursor,
                    task_name=task_name,
                    kind=kind,
                    search=search,
                    size=self.list_per_page,
                )
                keys, next_cursor = page.keys, page.cursor
        except _UNANSWERED as exc:
            error = str(exc)
        filters = {"task": task_name, "kind": kind, "q": search}
        can_release = self.has_release_permission(request)
        context = {
            **self._context(request, "list", str(self.opts.verbose_name_plural).capitalize()),
            "rows": [self._row(key, signed=can_release) for key in keys],
            "error": error,
            "filters": filters,
            "task_choices": self._choices(filters, "task", operations.keyed_task_names()),
            "kind_choices": self._choices(
                filters, "kind", list(operations.KIND_NAMES), operations.KIND_NAMES
            ),
            "next_url": _query(filters, cursor=next_cursor) if next_cursor else None,
            "first_url": _query(filters) if cursor else None,
            "can_release": can_release,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/celery_events/heldlock/change_list.html", context)

    def explain_view(self, request: HttpRequest) -> HttpResponse:
        """Answer what the next call of a task with given arguments does, and why."""
        self._check_view_permission(request)
        task_name = request.GET.get("task", "").strip()
        args_text = request.GET.get("args", "")
        kwargs_text = request.GET.get("kwargs", "")
        explanation, error = None, None
        if task_name:
            try:
                task = operations.get_task(task_name)
                args, kwargs = operations.parse_call(
                    args_text, kwargs_text, names=("args", "kwargs")
                )
                explanation = operations.explain(task, args, kwargs)
            except _UNANSWERED as exc:
                error = str(exc)
        can_release = self.has_release_permission(request)
        held = explanation.held_keys() if explanation and can_release else []
        context = {
            **self._context(request, "explain", "Explain a call"),
            "form": {"task": task_name, "args": args_text, "kwargs": kwargs_text},
            "task_names": operations.keyed_task_names(),
            "explanation": explanation,
            "states": explanation.key_lines() if explanation else [],
            "error": error,
            "release_tokens": [_sign(key) for key in held],
            "can_release": can_release,
        }
        return TemplateResponse(request, "admin/celery_events/heldlock/explain.html", context)

    def release_view(self, request: HttpRequest) -> HttpResponse:
        """Ask to confirm the release of the posted keys; release them once confirmed.

        Raises:
            PermissionDenied: the user may not release.
            SuspiciousOperation: a posted key's signature does not hold (a 400 response).
        """
        if not self.has_release_permission(request):
            raise PermissionDenied
        changelist = reverse(f"{self.admin_site.name}:{self._url_name('changelist')}")
        if request.method != "POST":
            return redirect(changelist)
        tokens = request.POST.getlist("key")
        keys = [_unsign(token) for token in tokens]
        if not keys:
            self.message_user(request, "Select the keys to release.", messages.WARNING)
            return redirect(changelist)
        if request.POST.get("confirm") != "yes":
            context = {
                **self._context(request, "release", "Are you sure?"),
                "rows": [
                    {**self._row(key), "token": token}
                    for key, token in zip(keys, tokens, strict=True)
                ],
            }
            return TemplateResponse(
                request, "admin/celery_events/heldlock/release_confirmation.html", context
            )
        try:
            removed = operations.discard(keys)
        except _UNANSWERED as exc:
            self.message_user(request, f"Nothing was released: {exc}", messages.ERROR)
            return redirect(changelist)
        self._log_releases(request, removed)
        for key in removed:
            self.message_user(request, f"Released {_describe(key)}.", messages.SUCCESS)
        for key in keys:
            if key not in removed:
                self.message_user(
                    request,
                    f"Kept {_describe(key)}: it no longer holds {key.task_id} "
                    "(released, expired or taken by another call).",
                    messages.WARNING,
                )
        return redirect(changelist)

    def _check_view_permission(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def _url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def _context(self, request: HttpRequest, page: str, title: str) -> dict[str, Any]:
        """Return what every page of the section renders with: the admin's and the section's."""
        site = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "page": page,
            "title": title,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "changelist_url": reverse(f"{site}:{self._url_name('changelist')}"),
            "explain_url": reverse(f"{site}:{self._url_name('explain')}"),
            "release_url": reverse(f"{site}:{self._url_name('release')}"),
            "cache_name": settings.CACHE_NAME,
        }

    def _row(self, key: HeldKey, *, signed: bool = False) -> dict[str, Any]:
        """Return what the list and the confirmation page show of ``key``.

        Args:
            key: the held key.
            signed: whether to sign it for the release form (only for users who may release:
                signing is most of a row's cost).
        """
        known = key.args is not None
        explain = {"task": key.task_name}
        if known:
            explain |= {"args": json.dumps(key.args), "kwargs": json.dumps(key.kwargs)}
        return {
            "key": key,
            "kind": operations.KIND_NAMES[key.kind],
            "arguments": operations.call_text(key.args, key.kwargs) if known else None,
            "time_left": operations.time_left_text(key.ttl),
            "token": _sign(key) if signed else None,
            "explain_query": urlencode(explain),
        }

    @staticmethod
    def _choices(
        filters: dict[str, str | None],
        name: str,
        values: Sequence[str],
        labels: Mapping[Any, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Return the links of one filter: "All", then each value, keeping the other filters."""
        options: list[str | None] = [None, *values]
        return [
            {
                "label": "All" if value is None else (labels or {}).get(value, value),
                "selected": filters[name] == value,
                "query": _query({**filters, name: value}),
            }
            for value in options
        ]

    def _log_releases(self, request: HttpRequest, removed: Sequence[HeldKey]) -> None:
        """Record each release in the admin log, under the user who made it."""
        content_type = ContentType.objects.get_for_model(HeldLock, for_concrete_model=False)
        user_id = cast("int", request.user.pk)  # admin_view lets only logged-in staff in
        LogEntry.objects.bulk_create(
            LogEntry(
                user_id=user_id,
                content_type_id=content_type.pk,
                object_id=key.key,
                object_repr=f"{operations.KIND_NAMES[key.kind]} of {key.task_name}"[:200],
                action_flag=DELETION,
                change_message=f"Released {_describe(key)}.",
            )
            for key in removed
        )


def _sign(key: HeldKey) -> str:
    """Return ``key`` as a signed text for the release form."""
    fields = [key.task_name, key.kind, key.key, key.beside, key.task_id, key.args, key.kwargs]
    return signing.dumps(fields, salt=_RELEASE_SALT)


def _unsign(token: str) -> HeldKey:
    """Return the key of a signed text of :func:`_sign`.

    Raises:
        SuspiciousOperation: the signature does not hold.
    """
    try:
        task_name, kind, key, beside, task_id, args, kwargs = signing.loads(
            token, salt=_RELEASE_SALT
        )
    except (signing.BadSignature, ValueError) as exc:
        msg = f"the release form's key {token[:40]!r} is not one this admin signed"
        raise SuspiciousOperation(msg) from exc
    return HeldKey(task_name, kind, key, beside, task_id, None, args, kwargs)


def _describe(key: HeldKey) -> str:
    kind = operations.KIND_NAMES[key.kind]
    return f"{kind} {key.key} of task {key.task_name} (task id {key.task_id})"


def _query(filters: dict[str, str | None], **more: str | None) -> str:
    """Return ``?...`` of the filters and ``more`` that have a value."""
    return "?" + urlencode({name: value for name, value in {**filters, **more}.items() if value})


def _cannot_list_text() -> str:
    return (
        f"Cache {settings.CACHE_NAME!r} is not a Redis cache: it cannot enumerate its keys, "
        "so held locks and ignore windows cannot be listed here. "
        "Explain a call to see its lock and ignore window."
    )
