"""The URLs of ``python -m benchmarks.admin_page``: Django's admin, with celery-events' section."""

from django.contrib import admin
from django.urls import path

__all__ = ["urlpatterns"]

urlpatterns = [path("admin/", admin.site.urls)]
