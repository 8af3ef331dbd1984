"""The Django admin section: see, explain and release unique locks and ignore windows.

Registered on Django's default admin site for :class:`~celery_events.models.HeldLock`; staff with
``celery_events.view_heldlock`` see the list and the explain page, those who also have
``celery_events.view_heldlock_arguments`` see the calls' arguments (the others their shape), and
those who also have ``celery_events.release_heldlock`` release keys, after a confirmation page,
each owner-checked as ``manage.py celery_events release`` does, and logged in the admin log under
their name.

The list walks the lock store's index with ``SCAN`` a page at a time
(:func:`celery_events.operations.held_page`). A key offered for release travels to the
confirmation page and back in a *release token*: signed (``django.core.signing``), for the user it
was made for, valid for :attr:`HeldLockAdmin.release_token_max_age` seconds, and holding no
argument of the call; so a release names only keys this admin listed, with the holder it read.
Arguments never travel in an address (which web servers log): the list links to a call's Explain
page by its index entry, and the Explain form is posted.

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
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from . import operations
from .config import settings
from .locks import RedisLockStore, get_lock_store
from .models import HeldLock
from .operations import UNANSWERED, Explanation, HeldKey
from .operator_input import OperationError, get_task, keyed_task_names, parse_call
from .operator_text import KIND_NAMES, arguments_text, time_left_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from django.http import HttpRequest, HttpResponse
    from django.urls import URLPattern

__all__ = ["HeldLockAdmin"]

#: The salt of the signed keys of the release form: a signature made for anything else fails.
#: (Tokens of earlier versions, which carried the call's arguments, had another salt.)
_RELEASE_SALT: Final = "celery_events.admin.release-token"

#: How many fields a release token holds: user, task, kind, key, beside, task id.
_TOKEN_FIELDS: Final = 6


@admin.register(HeldLock)
class HeldLockAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The held locks and open ignore windows of the lock store, with explain and release."""

    #: How many keys a page of the list aims at.
    list_per_page = operations.PAGE_SIZE
    #: How long, in seconds, a release token (a key offered for release by the list, Explain or
    #: the confirmation page) stays valid: 15 minutes.
    release_token_max_age = 15 * 60

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
        """Return whether the user may release locks and ignore windows: view and release them."""
        return self.has_view_permission(request) and request.user.has_perm(
            f"{self.opts.app_label}.release_{self.opts.model_name}"
        )

    def has_view_arguments_permission(self, request: HttpRequest) -> bool:
        """Return whether the user may see the calls' arguments, not only their shape."""
        return self.has_view_permission(request) and request.user.has_perm(
            f"{self.opts.app_label}.view_{self.opts.model_name}_arguments"
        )

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
        bad: list[operations.BadEntry] = []
        next_cursor = None
        try:
            if kind not in (None, *KIND_NAMES):
                error = f"kind {kind!r} is not one of {', '.join(KIND_NAMES)}"
            elif not isinstance(get_lock_store(), RedisLockStore):
                error = _cannot_list_text()
            else:
                page = operations.held_page(
                    cursor,
                    task_name=task_name,
                    kind=kind,
                    search=search,
                    search_arguments=self.has_view_arguments_permission(request),
                    size=self.list_per_page,
                )
                keys, bad, next_cursor = page.keys, page.bad, page.cursor
        except UNANSWERED as exc:
            error = str(exc)
        filters = {"task": task_name, "kind": kind, "q": search}
        can_release = self.has_release_permission(request)
        context = {
            **self._context(request, "list", str(self.opts.verbose_name_plural).capitalize()),
            "rows": [self._row(request, key, signed=can_release) for key in keys],
            "bad_entries": bad,
            "error": error,
            "filters": filters,
            "task_choices": self._choices(filters, "task", keyed_task_names()),
            "kind_choices": self._choices(filters, "kind", list(KIND_NAMES), KIND_NAMES),
            "next_url": _query(filters, cursor=next_cursor) if next_cursor else None,
            "first_url": _query(filters) if cursor else None,
            "can_release": can_release,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/celery_events/heldlock/change_list.html", context)

    def explain_view(self, request: HttpRequest) -> HttpResponse:
        """Answer what the next call of a task with given arguments does, and why.

        The arguments come from the posted form, or, from the list's link (a GET), from the
        index entry it names by task, kind and key; never from the address.
        """
        self._check_view_permission(request)
        reveal = self.has_view_arguments_permission(request)
        form = {"task": "", "args": "", "kwargs": ""}
        explanation: Explanation | None = None
        entry: HeldKey | None = None
        error = notice = None
        try:
            if request.method == "POST":
                form = {name: request.POST.get(name, "") for name in form}
                form["task"] = form["task"].strip()
                if form["task"]:
                    args, kwargs = parse_call(
                        form["args"], form["kwargs"], names=("args", "kwargs")
                    )
                    explanation = operations.explain(get_task(form["task"]), args, kwargs)
            else:
                form["task"] = request.GET.get("task", "").strip()
                if "args" in request.GET or "kwargs" in request.GET:
                    error = (
                        "Arguments are taken from the form, which is posted, never from the "
                        "page's address, which web servers log: enter them below."
                    )
                elif "key" in request.GET:
                    entry = self._referenced_entry(request)
                    if entry is not None and entry.args is not None:
                        explanation = operations.explain(
                            get_task(entry.task_name), entry.args, entry.kwargs or {}
                        )
                        if reveal:
                            form |= {
                                "args": json.dumps(entry.args),
                                "kwargs": json.dumps(entry.kwargs),
                            }
                    elif entry is not None:
                        notice = (
                            f"The index keeps no arguments of this call (the INDEX_ARGUMENTS "
                            f"setting is {settings.INDEX_ARGUMENTS!r}): enter them to explain it."
                        )
                    else:
                        error = "This key is no longer held: released, or expired."
        except UNANSWERED as exc:
            error = str(exc)
        can_release = self.has_release_permission(request)
        held = explanation.held_keys() if explanation else [entry] if entry else []
        context = {
            **self._context(request, "explain", "Explain a call"),
            "form": form,
            "task_names": keyed_task_names(),
            "explanation": explanation,
            "states": explanation.key_lines() if explanation else [],
            "entry": self._row(request, entry) if entry and not explanation else None,
            "arguments_hidden": entry is not None and entry.args is not None and not reveal,
            "error": error,
            "notice": notice,
            "release_tokens": [self._sign(request, key) for key in held] if can_release else [],
            "can_release": can_release,
        }
        return TemplateResponse(request, "admin/celery_events/heldlock/explain.html", context)

    @staticmethod
    def _referenced_entry(request: HttpRequest) -> HeldKey | None:
        """Return the held key of the index entry the list's link names (task, kind, key).

        Raises:
            OperationError: the reference is not one the list makes, or names a bad entry.
        """
        task_name = request.GET.get("task", "").strip()
        kind = request.GET.get("kind", "")
        key = request.GET.get("key", "")
        beside = request.GET.get("beside") or None
        if kind not in KIND_NAMES or not task_name or not key:
            msg = (
                f"the index entry of task {task_name!r}, kind {kind!r} and key {key!r} is not one "
                "the list links to"
            )
            raise OperationError(msg)
        return operations.held_entry(task_name, kind, key, beside)

    def release_view(self, request: HttpRequest) -> HttpResponse:
        """Ask to confirm the release of the posted keys; release them once confirmed.

        Raises:
            PermissionDenied: the user may not view and release.
            SuspiciousOperation: a posted release token was not signed by this admin for this
                user (a 400 response).
        """
        if not self.has_release_permission(request):
            raise PermissionDenied
        changelist = reverse(f"{self.admin_site.name}:{self._url_name('changelist')}")
        if request.method != "POST":
            return redirect(changelist)
        tokens = request.POST.getlist("key")
        try:
            keys = [self._unsign(request, token) for token in tokens]
        except signing.SignatureExpired:
            minutes = self.release_token_max_age // 60
            self.message_user(
                request,
                f"Nothing was released: the keys were offered more than {minutes} minutes ago. "
                "Select them again.",
                messages.WARNING,
            )
            return redirect(changelist)
        if not keys:
            self.message_user(request, "Select the keys to release.", messages.WARNING)
            return redirect(changelist)
        if request.POST.get("confirm") != "yes":
            context = {
                **self._context(request, "release", "Are you sure?"),
                "rows": [
                    {**self._row(request, key), "token": token}
                    for key, token in zip(keys, tokens, strict=True)
                ],
            }
            return TemplateResponse(
                request, "admin/celery_events/heldlock/release_confirmation.html", context
            )
        try:
            removed = operations.discard(keys)
        except UNANSWERED as exc:
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

    def _row(self, request: HttpRequest, key: HeldKey, *, signed: bool = False) -> dict[str, Any]:
        """Return what the list, Explain and the confirmation page show of ``key``.

        Args:
            request: the request, whose user decides what is shown of the arguments.
            key: the held key.
            signed: whether to make its release token (only for users who may release:
                signing is most of a row's cost).
        """
        reference = {"task": key.task_name, "kind": key.kind, "key": key.key}
        if key.beside is not None:
            reference["beside"] = key.beside
        return {
            "key": key,
            "kind": KIND_NAMES[key.kind],
            "arguments": arguments_text(key, reveal=self.has_view_arguments_permission(request)),
            "time_left": time_left_text(key.ttl),
            "token": self._sign(request, key) if signed else None,
            "explain_query": urlencode(reference),
        }

    def _sign(self, request: HttpRequest, key: HeldKey) -> str:
        """Return the release token of ``key`` for the request's user: no argument of the call."""
        fields = [str(request.user.pk), key.task_name, key.kind, key.key, key.beside, key.task_id]
        return signing.dumps(fields, salt=_RELEASE_SALT)

    def _unsign(self, request: HttpRequest, token: str) -> HeldKey:
        """Return the key of a release token of :meth:`_sign`.

        Raises:
            signing.SignatureExpired: the token is older than :attr:`release_token_max_age`.
            SuspiciousOperation: the token was not signed by this admin, or for another user.
        """
        try:
            fields = signing.loads(token, salt=_RELEASE_SALT, max_age=self.release_token_max_age)
        except signing.SignatureExpired:
            raise
        except (signing.BadSignature, ValueError) as exc:
            msg = f"the release form's key {token[:40]!r} is not one this admin signed"
            raise SuspiciousOperation(msg) from exc
        if not isinstance(fields, list) or len(fields) != _TOKEN_FIELDS:
            msg = f"the release form's key {token[:40]!r} is not a release token"
            raise SuspiciousOperation(msg)
        user, task_name, kind, key, beside, task_id = fields
        if user != str(request.user.pk):
            msg = f"the release form's key {token[:40]!r} was signed for another user"
            raise SuspiciousOperation(msg)
        return HeldKey(task_name, kind, key, beside, task_id, None)

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
                object_repr=f"{KIND_NAMES[key.kind]} of {key.task_name}"[:200],
                action_flag=DELETION,
                change_message=f"Released {_describe(key)}.",
            )
            for key in removed
        )


def _describe(key: HeldKey) -> str:
    kind = KIND_NAMES[key.kind]
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
