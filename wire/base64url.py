"""base64url without padding (RFC 4648 §5): how binary values and ticket payloads travel in our formats.

The one definition used by the ticket envelope (wire.tickets), the host channel (wire.hostchannel) and
the agent link (wire.relaylink). Decoding accepts the value with or without its ``=`` padding.
"""
from __future__ import annotations

import base64
import binascii


class Base64urlError(ValueError):
    """The text is not base64url."""


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes of ``text``; Base64urlError when it is not base64url (or not text at all)."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError, TypeError):
        raise Base64urlError("not base64url") from None
