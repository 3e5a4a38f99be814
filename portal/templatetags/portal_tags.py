"""Small display helpers for the portal's templates: durations, ages, status badges."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone

register = template.Library()

STATUS_TONES = {
    "available": "ok",
    "needs_assistance": "warn",
    "unavailable": "bad",
    "shutdown": "muted",
    "upgrading": "info",
    "active": "ok",
    "disconnected": "muted",
    "connected": "ok",
    "connecting": "info",
    "started": "info",
    "ended": "muted",
    "failed": "bad",
}


@register.filter
def tone(status: str) -> str:
    """The badge colour class of a status or state value."""
    return STATUS_TONES.get(str(status), "muted")


@register.filter
def seconds(delta: timedelta | None) -> str:
    """A duration as people read it: 850 ms, 2.4 s, 3 min 05 s, 2 h 10 min."""
    if delta is None:
        return "–"
    total = delta.total_seconds()
    if total < 0:
        return "–"
    if total < 1:
        return f"{round(total * 1000)} ms"
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} days"


@register.filter
def age(moment: datetime | None) -> str:
    """How long ago: '12 s ago'; 'never' for no time. The page's script keeps it current."""
    if moment is None:
        return "never"
    elapsed = max(timedelta(0), timezone.now() - moment)
    if elapsed < timedelta(minutes=1):
        return f"{int(elapsed.total_seconds())} s ago"
    return f"{seconds(elapsed)} ago"


@register.filter
def utc(moment: datetime | None) -> str:
    if moment is None:
        return "–"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
