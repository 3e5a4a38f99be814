"""What the connector needs from a .rdp file of our feed: the gateway's address and the ticket.

The file is read as FreeRDP reads it, with wire.rdpfile's grammar; the ticket's payload is read with
wire.tickets for its expiry and names only (unverified: its signature is the gateway's business). Pure
functions, no Django.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from wire import rdpfile
from wire.tickets import ConnectionTicket, read_connection_ticket

MAX_FILE_BYTES = rdpfile.MAX_FILE_BYTES
DEFAULT_GATEWAY_PORT = 443
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


class ConnectionFileError(Exception):
    """The file cannot be used; the message says why, for the user."""


@dataclass(frozen=True)
class ConnectionFile:
    gateway_host: str
    gateway_port: int
    ticket: str
    full_address: str
    ticket_info: ConnectionTicket | None  # what the ticket says, unverified; None when it is not ours

    @property
    def gateway_url(self) -> str:
        """The gateway's raw WebSocket endpoint (gateway/transports/wst.py)."""
        host = f"[{self.gateway_host}]" if ":" in self.gateway_host else self.gateway_host
        return f"wss://{host}:{self.gateway_port}/remoteDesktopGateway/"


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


def parse_connection_file(data: bytes, *, now: datetime | None = None) -> ConnectionFile:
    """The gateway and ticket of a feed file; ConnectionFileError when it has none or the ticket expired."""
    try:
        settings = {name: setting.value for name, setting in rdpfile.read_settings(rdpfile.decode(data)).items()}
    except rdpfile.RdpFileFormatError as exc:
        raise ConnectionFileError(str(exc)) from None
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
    info = read_connection_ticket(ticket)
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
