"""Periodic work without a beat process: the embedded default runs the beat schedule inside `serve`.

Each entry of ``CELERY_BEAT_SCHEDULE`` runs the same task function beat would, on a timer in this
process, in a worker thread so the event loop (relays, WebSockets) never waits for it. Like every database
call of `serve`, it closes that thread's connection around each run when it is too old or broken
(Channels' database_sync_to_async), so a kept connection is checked after a database restart.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from asgiref.sync import sync_to_async
from celery import current_app
from channels.db import database_sync_to_async
from django.conf import settings

log = logging.getLogger(__name__)


def schedule_seconds(schedule) -> float:
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, (int, float)):
        return float(schedule)
    run_every = getattr(schedule, "run_every", None)  # celery.schedules.schedule
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    raise ValueError(f"unsupported beat schedule {schedule!r}: use seconds or a timedelta")


def run_task_now(task_name: str) -> None:
    task = current_app.tasks.get(task_name)
    if task is None:
        log.error("periodic task %s is not registered", task_name)
        return
    try:
        task.apply(throw=True)
    except Exception:  # noqa: BLE001 - one failed run must not stop the timer; the next run retries
        log.exception("periodic task %s failed", task_name)


async def run_beat_schedule() -> None:
    """Run every beat entry on its interval until cancelled."""
    entries = getattr(settings, "CELERY_BEAT_SCHEDULE", {}) or {}
    if not entries:
        return
    # A worker imports every app's tasks module at start; without one, do the same here.
    await sync_to_async(current_app.loader.import_default_modules, thread_sensitive=True)()
    await asyncio.gather(*(_every(name, entry) for name, entry in entries.items()))


async def _every(name: str, entry: dict) -> None:
    interval = schedule_seconds(entry["schedule"])
    log.info("in-process beat: %s every %ss", name, interval)
    run = database_sync_to_async(run_task_now, thread_sensitive=False)
    while True:
        await asyncio.sleep(interval)
        await run(entry["task"])
