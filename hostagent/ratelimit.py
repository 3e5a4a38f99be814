"""Failed registration attempts per client address, counted in the shared cache (Redis in
production, so every process sees the same count)."""
from __future__ import annotations

from django.core.cache import cache

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60


def _key(address: str) -> str:
    return f"hostagent:register-failures:{address}"


def too_many_failures(address: str) -> bool:
    return (cache.get(_key(address)) or 0) >= MAX_FAILURES


def record_failure(address: str) -> None:
    """Count one failure; the window starts with the first failure and is not extended by later ones."""
    key = _key(address)
    cache.add(key, 0, WINDOW_SECONDS)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, WINDOW_SECONDS)
