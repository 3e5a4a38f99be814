"""Which connection a log line concerns, and the JSON log format (``WVD_LOG_FORMAT=json``).

Code that handles one connection says so once (``for_activity``: the gateway when a ticket is admitted or
refused, the agent link, orchestration); every line logged from there on, in that task or thread and in
the worker threads it hands database work to (asgiref copies the context), carries ``activity_id``.
``ActivityFilter`` (settings.LOGGING, on the console handler) puts it on the record; the plain format
does not show it (it is unchanged), the JSON format does, on every line that has one.
"""
from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

activity: contextvars.ContextVar[str] = contextvars.ContextVar("wvd_activity_id", default="")


def first_line(exc: BaseException) -> str:
    """An exception as one log line (its message's first line, or its class): for expected failures, such
    as the database being away, that a log line tells better than a traceback."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def set_activity(activity_id: str) -> None:
    """From here on in this task (and what it starts), log lines concern ``activity_id``."""
    if activity_id:
        activity.set(str(activity_id))


@contextmanager
def for_activity(activity_id: str) -> Iterator[None]:
    """Log lines inside the block concern ``activity_id`` (for code that returns to other work after,
    e.g. a Celery task in a worker process, or eager in the gateway's thread)."""
    token = activity.set(str(activity_id) if activity_id else activity.get())
    try:
        yield
    finally:
        activity.reset(token)


class ActivityFilter(logging.Filter):
    """Adds ``activity_id`` to a record logged while a connection is being handled; lets every record pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = activity.get()
        if current and not hasattr(record, "activity_id"):
            record.activity_id = current
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, ``activity_id`` when the
    line concerns a connection, the exception's text when there is one, and any ``extra`` fields."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        super().__init__(*args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds")
