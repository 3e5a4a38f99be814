"""What an unauthenticated peer may cost the gateway: bounded in time, in count and in what it writes.

A connection is *unauthenticated* from the moment it is accepted until its client's ticket is admitted
(gateway/records.py) or an agent has proved its host's identity (the agent link). Until then:

* an absolute deadline (``WVD_GATEWAY_PREAUTH_SECONDS``) counts from the accept; no traffic extends it
  (a WebSocket ping every second changes nothing), and a connection still unauthenticated then is closed;
* at most ``WVD_GATEWAY_PREAUTH_MAX_PER_ADDRESS`` such connections per client address and
  ``WVD_GATEWAY_PREAUTH_MAX`` in all are held; one more is answered 503 and closed at once, which costs
  no database work at all;
* a presented ticket that is not ours (malformed, a bad signature) is refused without a Connection record:
  counted and logged, rate-limited, instead (a validly signed one that expired or was revoked is recorded
  as before: it names a real user and resource).

Refusals and expiries are logged at most once a minute per kind, with how many there were since.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0  # seconds between two log lines of one kind of refusal


class RateLimitedLog:
    """Counts events of a kind and logs the first at once, then a summary at most every ``interval``."""

    def __init__(self, what: str, interval: float = LOG_INTERVAL) -> None:
        self.what, self.interval = what, interval
        self._lock = threading.Lock()
        self._since_logged = 0
        self._logged_at = float("-inf")
        self.total = 0

    def note(self, detail: str) -> None:
        with self._lock:
            self.total += 1
            self._since_logged += 1
            now = time.monotonic()
            if now - self._logged_at < self.interval:
                return
            count, self._since_logged, self._logged_at = self._since_logged, 0, now
        log.warning("%s: %d in the last %.0f s (%d since start), the latest %s", self.what, count,
                    self.interval, self.total, detail)


@dataclass
class PreAuthGuard:
    """This gateway instance's unauthenticated connections, by client address."""

    max_per_address: int
    max_total: int
    _by_address: Counter = field(default_factory=Counter)
    _total: int = 0
    refused: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(
        "connections refused: too many waiting to authenticate"))
    expired: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(
        "connections closed: not authenticated in time"))

    def enter(self, address: str) -> bool:
        """Count a new connection from ``address``; False (not counted) when a cap is reached."""
        if self._total >= self.max_total or self._by_address[address] >= self.max_per_address:
            self.refused.note(f"from {address} ({self._by_address[address]} from it, {self._total} in all)")
            return False
        self._by_address[address] += 1
        self._total += 1
        return True

    def leave(self, address: str) -> None:
        """The connection authenticated or ended: it no longer counts."""
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]
        self._total -= 1

    @property
    def waiting(self) -> int:
        return self._total

    def waiting_from(self, address: str) -> int:
        return self._by_address.get(address, 0)


garbage_tickets = RateLimitedLog("requests refused: not one of our tickets")
