"""What the connector needs from a .rdp file of our feed: the gateway's address and the ticket.

Read the way FreeRDP reads files (PROTOCOLS.md §1.1): UTF-16LE after an FF FE BOM, otherwise UTF-8 (a
UTF-8 BOM is tolerated); ``name:type:value`` lines, names case-insensitive, the last line of a name wins.
The ticket's payload (``wct1.<base64url JSON>.<signature>``, wvdportal/tickets.py) is read for its
expiry and names only; its signature is the gateway's business. Pure functions, no Django.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MAX_FILE_BYTES = 1 << 20  # feed files are a few kB
DEFAULT_GATEWAY_PORT = 443
_LINE = re.compile(r"^([^:]+):([sib]):(.*)$")
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_TICKET = re.compile(r"^wct1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")


class ConnectionFileError(Exception):
    """The file cannot be used; the message says why, for the user."""


@dataclass(frozen=True)
class TicketInfo:
    """What the ticket's payload says (unverified: only the gateway can check the signature)."""

    expires_at: datetime
    username: str
    resource: str
    pool: str


@dataclass(frozen=True)
class ConnectionFile:
    gateway_host: str
    gateway_port: int
    ticket: str
    full_address: str
    ticket_info: TicketInfo | None

    @property
    def gateway_url(self) -> str:
        """The gateway's raw WebSocket endpoint (gateway/transports/wst.py)."""
        host = f"[{self.gateway_host}]" if ":" in self.gateway_host else self.gateway_host
        return f"wss://{host}:{self.gateway_port}/remoteDesktopGateway/"


def decode(data: bytes) -> str:
    if data.startswith(b"\xff\xfe"):
        try:
            return data[2:].decode("utf-16-le")
        except UnicodeDecodeError as exc:
            raise ConnectionFileError(f"the file is not valid UTF-16LE: {exc.reason}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConnectionFileError("the file is neither UTF-16LE with a BOM nor UTF-8; "
                                  "is it a .rdp file?") from None


def parse_settings(text: str) -> dict[str, str]:
    """``{lower-case name: value}`` of every ``name:type:value`` line; other lines are ignored."""
    settings: dict[str, str] = {}
    for line in re.split(r"[\r\n]+", text):
        match = _LINE.match(line)
        if match:
            settings[match.group(1).strip().lower()] = match.group(3).strip()
    return settings


def parse_gateway_address(value: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (FreeRDP's default port is 443)."""
    host, port_text = value, ""
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise ConnectionFileError(f"gatewayhostname {value!r} is not a valid address")
        host, rest = value[1:close], value[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ConnectionFileError(f"gatewayhostname {value!r} is not a valid address")
            port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    if not host or (":" not in host and not _HOST.match(host)):
        raise ConnectionFileError(f"gatewayhostname {value!r} is not a host name or address")
    if not port_text:
        return host, DEFAULT_GATEWAY_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConnectionFileError(f"gatewayhostname {value!r} has an invalid port")
    return host, int(port_text)


def read_ticket(ticket: str) -> TicketInfo | None:
    """The claims of one of our connection tickets, or None when the payload is not readable."""
    match = _TICKET.match(ticket)
    if match is None:
        return None
    payload = match.group(1)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    expiry = claims.get("e")
    if not isinstance(expiry, int) or isinstance(expiry, bool) or expiry <= 0:
        return None
    try:
        expires_at = datetime.fromtimestamp(expiry, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return TicketInfo(expires_at=expires_at, username=str(claims.get("n", "")),
                      resource=str(claims.get("r", "")), pool=str(claims.get("p", "")))


def parse_connection_file(data: bytes, *, now: datetime | None = None) -> ConnectionFile:
    """The gateway and ticket of a feed file; ConnectionFileError when it has none or the ticket expired."""
    if len(data) > MAX_FILE_BYTES:
        raise ConnectionFileError(f"the file is larger than {MAX_FILE_BYTES} bytes; is it a .rdp file?")
    settings = parse_settings(decode(data))
    gateway = settings.get("gatewayhostname", "")
    if not gateway:
        raise ConnectionFileError("the file names no gateway (gatewayhostname); download it again from the portal")
    host, port = parse_gateway_address(gateway)
    ticket = settings.get("gatewayaccesstoken", "")
    if not ticket:
        raise ConnectionFileError("the file carries no connection ticket (gatewayaccesstoken); "
                                  "download it again from the portal")
    if not ticket.isascii() or not ticket.isprintable() or " " in ticket:
        raise ConnectionFileError("the file's connection ticket is malformed; download it again from the portal")
    info = read_ticket(ticket)
    if info is not None and info.expires_at <= (now or datetime.now(UTC)):
        raise ConnectionFileError(
            f"the file's connection ticket expired at {info.expires_at:%Y-%m-%d %H:%M:%S} UTC; "
            "refresh your resources (or download the file again) and retry")
    full_address = settings.get("alternate full address") or settings.get("full address", "")
    return ConnectionFile(gateway_host=host, gateway_port=port, ticket=ticket, full_address=full_address,
                          ticket_info=info)


def read_connection_file(path: Path, *, now: datetime | None = None) -> ConnectionFile:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConnectionFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_connection_file(data, now=now)
