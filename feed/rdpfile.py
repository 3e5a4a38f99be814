"""The .rdp files of the feed: one per user, resource and launch (PROTOCOLS.md §1.4).

Every file names a routing name (``full address``, which the gateway maps to the host pool), the
gateway instance and a short-lived ticket as the gateway access token, so stock clients (FreeRDP
2.11, mstsc) connect through our gateway without extra options. A pool's custom properties are
merged in; the settings we write for routing, the gateway and the RemoteApp always win.

Pure functions over plain values: the view gathers the inputs from the models.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from broker.rdpproperties import RESERVED_PROPERTIES, RdpProperty, parse_rdp_properties
from feed.rdpsign import PrivateKey, sign_rdp
from wire.rdpfile import encode, format_line

logger = logging.getLogger(__name__)

DESKTOP = "desktop"
REMOTEAPP = "remoteapp"
RDP_CONTENT_TYPE = "application/x-rdp"
# The port the session host's RDP listener is told about; the gateway routes by name, not port.
SESSION_HOST_PORT = 3389

# §1.4 defaults a host pool may change with its custom properties (display, clipboard, audio,
# how the client treats the session host's certificate).
DEFAULT_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("promptcredentialonce", "i", "0"),
    ("authentication level", "i", "2"),
    ("enablecredsspsupport", "i", "1"),
    ("screen mode id", "i", "2"),
    ("redirectclipboard", "i", "1"),
    ("audiomode", "i", "0"),
)

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Tickets are URL-safe tokens; no spaces, since clients trim string values.
_ACCESS_TOKEN = re.compile(r"^[\x21-\x7e]{1,8000}$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


class RdpFileError(ValueError):
    """An input that cannot go into an .rdp file; the message names it."""


@dataclass(frozen=True)
class RdpResource:
    """What the file launches: a pool's desktop, or one RemoteApp."""

    kind: str  # DESKTOP or REMOTEAPP, the values of feed.choices.ApplicationGroupType
    alias: str
    title: str
    # RemoteApp only. Empty means the published-alias form "||alias" that session hosts resolve
    # through their list of published programs; a path launches that program directly.
    program: str = ""
    # RemoteApp only: the arguments its command-line policy allows (the caller applies the policy).
    command_line: str = ""


def _text(what: str, value: str, *, max_length: int = 1000, required: bool = True) -> str:
    if not isinstance(value, str):
        raise RdpFileError(f"the {what} must be text")
    if required and not value.strip():
        raise RdpFileError(f"the {what} is empty")
    if len(value) > max_length:
        raise RdpFileError(f"the {what} is longer than {max_length} characters")
    # A line break would start a new setting: the one thing that must never pass.
    if _CONTROL.search(value):
        raise RdpFileError(f"the {what} contains a line break or control character")
    return value.strip()  # clients trim string values anyway


def _gateway_address(host: str, port: int) -> str:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RdpFileError(f"the gateway port must be 1-65535, got {port!r}")
    _text("gateway host", host, max_length=253)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host):
            raise RdpFileError(f"the gateway host {host!r} is not a host name or IP address") from None
        return f"{host}:{port}"
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _our_settings(*, routing_name: str, gateway_host: str, gateway_port: int, access_token: str,
                  workspace_id: str, resource: RdpResource) -> list[tuple[str, str, str]]:
    """The settings we always write, in §1.4 order, with the overridable defaults marked by name."""
    if not isinstance(routing_name, str) or not _HOST_NAME.match(routing_name):
        raise RdpFileError(f"the routing name {routing_name!r} is not a host name")
    if not isinstance(access_token, str) or not _ACCESS_TOKEN.match(access_token):
        raise RdpFileError("the access token must be 1-8000 printable ASCII characters without spaces")
    workspace_id = _text("workspace id", workspace_id, max_length=100)
    if resource.kind not in (DESKTOP, REMOTEAPP):
        raise RdpFileError(f"the resource kind must be {DESKTOP!r} or {REMOTEAPP!r}, got {resource.kind!r}")
    if not isinstance(resource.alias, str) or not _ALIAS.match(resource.alias):
        raise RdpFileError(f"the resource alias {resource.alias!r} is not a valid name")
    title = _text("resource title", resource.title, max_length=200)

    settings = [
        ("full address", "s", routing_name),
        ("alternate full address", "s", routing_name),
        ("server port", "i", str(SESSION_HOST_PORT)),
        ("gatewayhostname", "s", _gateway_address(gateway_host, gateway_port)),
        ("gatewayusagemethod", "i", "1"),  # always through the gateway (2 would try direct first)
        ("gatewayprofileusagemethod", "i", "1"),  # mstsc ignores the gateway lines without it
        ("gatewaycredentialssource", "i", "5"),  # cookie: the access token authenticates
        ("gatewayaccesstoken", "s", access_token),
        *DEFAULT_SETTINGS[:3],
    ]
    if resource.kind == DESKTOP:
        settings.append(("remoteapplicationmode", "i", "0"))
    else:
        program = _text("RemoteApp program", resource.program, max_length=500, required=False)
        program = program or "||" + resource.alias
        command_line = _text("RemoteApp command line", resource.command_line, max_length=500, required=False)
        settings += [
            ("remoteapplicationmode", "i", "1"),
            ("remoteapplicationprogram", "s", program),
            ("remoteapplicationname", "s", title),
            ("remoteapplicationcmdline", "s", command_line),
            ("alternate shell", "s", program),
            ("disableremoteappcapscheck", "i", "1"),
        ]
    settings += [*DEFAULT_SETTINGS[3:], ("workspace id", "s", workspace_id)]
    return settings


def build_rdp(*, routing_name: str, gateway_host: str, gateway_port: int, access_token: str,
              workspace_id: str, resource: RdpResource,
              custom_properties: str | Sequence[RdpProperty] = ()) -> str:
    """The unsigned file text (CRLF line ends) for one launch of ``resource``.

    ``custom_properties`` is the pool's text (validated here, RdpPropertiesError if bad) or the
    already-parsed properties. They replace the §1.4 defaults they name and are appended otherwise.
    Raises RdpFileError for an input that cannot be written safely.
    """
    settings = _our_settings(routing_name=routing_name, gateway_host=gateway_host, gateway_port=gateway_port,
                             access_token=access_token, workspace_id=workspace_id, resource=resource)
    if isinstance(custom_properties, str):
        custom_properties = parse_rdp_properties(custom_properties)
    defaults = {name for name, _, _ in DEFAULT_SETTINGS}
    ours = {name for name, _, _ in settings} - defaults
    custom: dict[str, RdpProperty] = {}
    for prop in custom_properties:
        if not isinstance(prop, RdpProperty):
            raise RdpFileError(f"custom properties must be RdpProperty values, got {type(prop).__name__}")
        if prop.name in ours or prop.name in RESERVED_PROPERTIES:
            # Unreachable through RdpProperty's own validation; kept so our settings always win.
            logger.warning("ignored custom RDP property %r: the control plane sets it", prop.name)
            continue
        custom[prop.name] = prop

    lines = []
    for name, type_, value in settings:
        override = custom.pop(name, None) if name in defaults else None
        lines.append(override.line if override else format_line(name, type_, value))
    lines += [prop.line for prop in custom.values()]
    return "".join(line + "\r\n" for line in lines)


def render_signed_rdp(*, routing_name: str, gateway_host: str, gateway_port: int, access_token: str,
                      workspace_id: str, resource: RdpResource, certificate: x509.Certificate,
                      private_key: PrivateKey, custom_properties: str | Sequence[RdpProperty] = ()) -> bytes:
    """The file as served: built, signed like rdpsign.exe, UTF-16LE with BOM (``RDP_CONTENT_TYPE``)."""
    text = build_rdp(routing_name=routing_name, gateway_host=gateway_host, gateway_port=gateway_port,
                     access_token=access_token, workspace_id=workspace_id, resource=resource,
                     custom_properties=custom_properties)
    return encode(sign_rdp(text, certificate, private_key))
