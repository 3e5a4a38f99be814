"""The Celery app. Without WVD_REDIS_URL tasks run eagerly in the calling process."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wvdportal.settings")

app = Celery("wvdportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
