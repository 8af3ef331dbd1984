import os

from celery_events.celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")  # its tasks are DjangoTasks
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
