"""base64url without padding (RFC 4648 §5): how binary values and ticket payloads travel in our formats.

The one definition used by the ticket envelope (wire.tickets), the host channel (wire.hostchannel) and
the agent link (wire.relaylink). Decoding is strict: only the URL-safe alphabet, the ``=`` padding either
absent or exactly right, and the canonical form (no stray bits in the last character), so one value has
one spelling.
"""
from __future__ import annotations

import base64
import re

_TEXT = re.compile(r"[A-Za-z0-9_-]*")


class Base64urlError(ValueError):
    """The text is not base64url."""


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes of ``text``; Base64urlError when it is not base64url (or not text at all)."""
    if not isinstance(text, str):
        raise Base64urlError("not base64url")
    unpadded = text.rstrip("=")
    padding = len(text) - len(unpadded)
    if (not _TEXT.fullmatch(unpadded) or len(unpadded) % 4 == 1
            or (padding and (padding > 2 or len(text) % 4))):
        raise Base64urlError("not base64url")
    data = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    if encode(data) != unpadded:  # stray bits in the last character
        raise Base64urlError("not base64url")
    return data
