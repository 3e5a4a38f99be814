"""The agent link: the wire protocol of a session host's reverse connection to a gateway instance.

Pure Python (no Django): imported by the gateway's relay endpoint and by the agent program. One
WebSocket per connection at ``/ws/relay/<activity id>/``:

1. gateway → agent  text ``{"type": "challenge", "nonce": b64url}``
2. agent → gateway  text ``{"type": "hello", "certificate": PEM, "signature": b64url, "ticket": host ticket}``
   — or ``{"type": "fail", "reason": "rdp_unreachable", "detail": …, "ticket": host ticket}`` when the
   agent could not reach its RDP listener (the client is refused at once instead of waiting).
3. gateway → agent  text ``{"type": "ready", "window": bytes}``
4. both ways        binary frames carry the RDP byte stream; text ``{"type": "credit", "bytes": n}``
   returns window: a side never has more than ``window`` bytes sent and not yet credited back, so
   neither daphne's unbounded inbound queue nor the agent ever buffers more than a window.

Text frames are small JSON objects validated here; anything else ends the link.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

MAX_CONTROL_FRAME = 16 * 1024
DEFAULT_WINDOW = 512 * 1024
FAIL_REASONS = ("rdp_unreachable", "refused")


class LinkError(ValueError):
    """A malformed or unexpected control frame."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError, TypeError):
        raise LinkError("not base64url") from None


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def challenge(nonce: bytes) -> str:
    return encode({"type": "challenge", "nonce": b64(nonce)})


def hello(certificate_pem: str, signature: bytes, ticket: str) -> str:
    return encode({"type": "hello", "certificate": certificate_pem, "signature": b64(signature), "ticket": ticket})


def fail(reason: str, detail: str, ticket: str) -> str:
    return encode({"type": "fail", "reason": reason, "detail": detail[:300], "ticket": ticket})


def ready(window: int) -> str:
    return encode({"type": "ready", "window": window})


def credit(nbytes: int) -> str:
    return encode({"type": "credit", "bytes": nbytes})


def _string(message: dict, key: str, limit: int) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise LinkError(f"{key!r} must be a non-empty string of at most {limit} characters")
    return value


def _count(message: dict, key: str, limit: int) -> int:
    value = message.get(key)
    if type(value) is not int or not 0 < value <= limit:
        raise LinkError(f"{key!r} must be an integer in 1..{limit}")
    return value


def decode(frame: str, expected: tuple[str, ...]) -> dict[str, Any]:
    """Parse and validate a control frame whose type must be one of ``expected``."""
    if not isinstance(frame, str) or len(frame) > MAX_CONTROL_FRAME:
        raise LinkError("control frames are JSON text of at most 16 KiB")
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        raise LinkError("control frame is not JSON") from None
    if not isinstance(message, dict):
        raise LinkError("control frame must be a JSON object")
    kind = message.get("type")
    if kind not in expected:
        raise LinkError(f"unexpected control frame {str(kind)[:30]!r} (expected {', '.join(expected)})")
    if kind == "challenge":
        return {"type": kind, "nonce": unb64(_string(message, "nonce", 100))}
    if kind == "hello":
        return {"type": kind, "certificate": _string(message, "certificate", 8192),
                "signature": unb64(_string(message, "signature", 1400)), "ticket": _string(message, "ticket", 2048)}
    if kind == "fail":
        reason = _string(message, "reason", 40)
        if reason not in FAIL_REASONS:
            raise LinkError(f"unknown fail reason {reason[:40]!r}")
        detail = message.get("detail", "")
        return {"type": kind, "reason": reason, "detail": detail[:300] if isinstance(detail, str) else "",
                "ticket": _string(message, "ticket", 2048)}
    if kind == "ready":
        return {"type": kind, "window": _count(message, "window", 64 * 1024 * 1024)}
    if kind == "credit":
        return {"type": kind, "bytes": _count(message, "bytes", 1 << 40)}
    raise LinkError(f"unknown control frame {kind!r}")


class CreditWindow:
    """How many bytes this side may still send before the peer credits some back (asyncio)."""

    def __init__(self, window: int) -> None:
        import asyncio  # noqa: PLC0415 - keeps the module importable for pure decoding in tests

        self.available = window
        self._event = asyncio.Event()
        self._event.set()

    async def acquire(self, nbytes: int) -> None:
        """Wait until some window is left, then take ``nbytes`` (it may go below zero by one write)."""
        while self.available <= 0:
            self._event.clear()
            await self._event.wait()
        self.available -= nbytes

    def grant(self, nbytes: int) -> None:
        self.available += nbytes
        if self.available > 0:
            self._event.set()


class CreditCounter:
    """Bytes received and consumed; says when to credit them back (every half window)."""

    def __init__(self, window: int) -> None:
        self.threshold = max(1, window // 2)
        self.pending = 0

    def consumed(self, nbytes: int) -> int:
        """Record consumed bytes; returns how many to credit now (0 until half a window)."""
        self.pending += nbytes
        if self.pending >= self.threshold:
            grant, self.pending = self.pending, 0
            return grant
        return 0
