"""Without a beat process, `serve` runs the beat schedule itself: every entry names a real task."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings

from gateway.periodic import schedule_seconds
from wvdportal.celery import app


def test_every_beat_entry_names_a_registered_task_once_the_apps_tasks_are_imported():
    app.loader.import_default_modules()
    missing = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] not in app.tasks]
    assert missing == []


@pytest.mark.parametrize(("schedule", "seconds"), [(timedelta(seconds=10), 10.0), (30, 30.0), (2.5, 2.5)])
def test_schedules_are_read_as_seconds(schedule, seconds):
    assert schedule_seconds(schedule) == seconds


def test_an_unsupported_schedule_is_refused_clearly():
    with pytest.raises(ValueError, match="use seconds or a timedelta"):
        schedule_seconds("every day")
