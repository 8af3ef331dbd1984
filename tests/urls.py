"""The test project's URLs: Django's admin, where celery-events registers its section."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
