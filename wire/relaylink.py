"""The agent link: the wire protocol of a session host's reverse connection to a gateway instance.

Pure Python (no Django): imported by the gateway's agent-link endpoint (gateway/transports/agentlink.py)
and by the agent program. One TLS connection per RDP connection, to the same listener RDP clients reach
(the gateway's own asyncio server, not the web server: every byte of the session crosses this link):

1. agent → gateway  ``GET /hostagent/relay/<activity id>/ HTTP/1.1`` with ``Connection: Upgrade`` and
   ``Upgrade: wvd-agent-link/1``; the gateway answers ``101 Switching Protocols`` (or an HTTP error whose
   text body says why).
2. gateway → agent  ``{"type": "challenge", "nonce": b64url}``
3. agent → gateway  ``{"type": "hello", "certificate": PEM, "signature": b64url, "ticket": host ticket}``
   — or ``{"type": "fail", "reason": "rdp_unreachable", "detail": …, "ticket": host ticket}`` when the
   agent could not reach its RDP listener (the client is refused at once instead of waiting).
4. gateway → agent  ``{"type": "ready"}`` — or ``{"type": "refused", "reason": …}`` and the end.
5. Raw RDP bytes both ways until either side closes. There is no framing and no window of our own:
   each side stops reading while the peer it writes to is slow, so TCP's flow control carries the
   backpressure end to end and neither side buffers more than its socket buffers.

Control messages (2-4) are JSON objects, one per line (``\\n``-terminated), at most 16 KiB, validated here;
anything else ends the link.
"""
from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from wire import base64url

MAX_CONTROL_LINE = 16 * 1024
MAX_RESPONSE_HEAD = 16 * 1024
FAIL_REASONS = ("rdp_unreachable", "refused")
UPGRADE_TOKEN = "wvd-agent-link/1"
PATH_PREFIX = "/hostagent/relay/"
ACTIVITY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A DNS name (an internationalised one in its xn-- form) or an IP address, as the Host header carries it.
_HOST = re.compile(r"[0-9A-Za-z._:%-]+")
_STATUS = re.compile(r"[0-9]{3}")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes "²"


class LinkError(ValueError):
    """A malformed or unexpected control message, response or URL."""


def unb64(text: str) -> bytes:
    try:
        return base64url.decode(text)
    except base64url.Base64urlError:
        raise LinkError("not base64url") from None


# --- the URL and the upgrade ----------------------------------------------------------------------


def relay_path(activity_id: str) -> str:
    return f"{PATH_PREFIX}{activity_id}/"


def activity_from_path(path: str) -> str | None:
    """The activity id in a request path ``/hostagent/relay/<id>/``, or None when it is not one."""
    if not path.startswith(PATH_PREFIX):
        return None
    rest = path[len(PATH_PREFIX):].rstrip("/")
    return rest if ACTIVITY_ID.fullmatch(rest) else None


def split_url(url: str) -> tuple[bool, str, int, str]:
    """``https://gw.example:8443/hostagent/relay/<id>/`` → (tls, host, port, path)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise LinkError(f"malformed relay URL {url[:100]!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise LinkError(f"the relay URL must be https://host[:port]/…, not {url[:100]!r}")
    if not _HOST.fullmatch(parts.hostname):
        raise LinkError(f"the relay URL's host must be a DNS name in ASCII or an IP address, "
                        f"not {parts.hostname[:100]!r}")
    if activity_from_path(parts.path) is None:
        raise LinkError(f"the relay URL's path must be {PATH_PREFIX}<activity id>/")
    tls = parts.scheme == "https"
    return tls, parts.hostname, port or (443 if tls else 80), parts.path


def upgrade_request(host: str, port: int, path: str) -> bytes:
    authority = f"[{host}]" if ":" in host else host
    return (f"GET {path} HTTP/1.1\r\nHost: {authority}:{port}\r\nConnection: Upgrade\r\n"
            f"Upgrade: {UPGRADE_TOKEN}\r\n\r\n").encode("ascii")


def switching_protocols() -> bytes:
    return f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {UPGRADE_TOKEN}\r\n\r\n".encode()


def parse_response_head(head: bytes) -> tuple[int, int]:
    """A response head ending in a blank line → (status, Content-Length, or 0 without a readable one)."""
    if len(head) > MAX_RESPONSE_HEAD or not head.endswith(b"\r\n\r\n"):
        raise LinkError("malformed HTTP response from the gateway")
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or not _STATUS.fullmatch(parts[1]):
        raise LinkError(f"not an HTTP/1.1 response: {lines[0][:80]!r}")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and _CONTENT_LENGTH.fullmatch(value.strip()):
            length = int(value.strip())
    return int(parts[1]), length


# --- control messages ---------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def challenge(nonce: bytes) -> bytes:
    return encode({"type": "challenge", "nonce": base64url.encode(nonce)})


def hello(certificate_pem: str, signature: bytes, ticket: str) -> bytes:
    return encode({"type": "hello", "certificate": certificate_pem, "signature": base64url.encode(signature), "ticket": ticket})


def fail(reason: str, detail: str, ticket: str) -> bytes:
    return encode({"type": "fail", "reason": reason, "detail": detail[:300], "ticket": ticket})


def ready() -> bytes:
    return encode({"type": "ready"})


def refused(reason: str) -> bytes:
    return encode({"type": "refused", "reason": reason[:300]})


def _string(message: dict, key: str, limit: int) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise LinkError(f"{key!r} must be a non-empty string of at most {limit} characters")
    return value


def decode(line: bytes, expected: tuple[str, ...]) -> dict[str, Any]:
    """Parse and validate one control line whose type must be one of ``expected``."""
    if not isinstance(line, bytes | bytearray) or len(line) > MAX_CONTROL_LINE:
        raise LinkError("control messages are JSON lines of at most 16 KiB")
    if not line.endswith(b"\n"):
        raise LinkError("the link ended in the middle of a control message")
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        raise LinkError("control message is not JSON") from None
    if not isinstance(message, dict):
        raise LinkError("control message must be a JSON object")
    kind = message.get("type")
    if kind not in expected:
        raise LinkError(f"unexpected control message {str(kind)[:30]!r} (expected {', '.join(expected)})")
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
    if kind == "refused":
        return {"type": kind, "reason": _string(message, "reason", 300)}
    if kind == "ready":
        return {"type": kind}
    raise LinkError(f"unknown control message {kind!r}")
