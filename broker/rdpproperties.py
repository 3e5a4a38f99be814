"""A host pool's custom RDP properties: parse and validate ``name:type:value`` lines.

An admin may add .rdp settings to every file of a pool (display, redirection, audio...). Each
line is checked against a table of known settings and their types (PROTOCOLS.md §1.1-§1.2, §2.2),
and the settings the control plane writes itself (where the client connects, the gateway and its
ticket, the RemoteApp being launched, the signature) are refused: they are not the pool's to change.

Pure Python, no Django: the model, the API and the .rdp builder all call it. The line grammar is
wire.rdpfile's.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from wire import rdpfile
from wire.rdpfile import BINARY, INTEGER, STRING

logger = logging.getLogger(__name__)

TYPE_NAMES = {STRING: "a string (s)", INTEGER: "an integer (i)", BINARY: "binary data (b)"}

# Known settings and their types. Names are lower case; files match them case-insensitively.
KNOWN_PROPERTIES: dict[str, str] = {
    # Connection and identity
    "full address": STRING,
    "alternate full address": STRING,
    "server port": INTEGER,
    "username": STRING,
    "domain": STRING,
    "workspace id": STRING,
    "workspaceid": INTEGER,  # FreeRDP's own key
    "use redirection server name": INTEGER,
    "loadbalanceinfo": STRING,
    "pcb": STRING,
    "signscope": STRING,
    "signature": STRING,
    # Gateway
    "gatewayhostname": STRING,
    "gatewayusagemethod": INTEGER,
    "gatewaycredentialssource": INTEGER,
    "gatewayprofileusagemethod": INTEGER,
    "gatewayaccesstoken": STRING,
    "promptcredentialonce": INTEGER,
    "rdgiskdcproxy": INTEGER,
    "kdcproxyname": STRING,
    # Authentication and security
    "authentication level": INTEGER,
    "enablecredsspsupport": INTEGER,
    "negotiate security layer": INTEGER,
    "prompt for credentials": INTEGER,
    "prompt for credentials on client": INTEGER,
    "require pre-authentication": INTEGER,
    "pre-authentication server address": STRING,
    "enablerdsaadauth": INTEGER,
    "targetisaadjoined": INTEGER,
    "redirectwebauthn": INTEGER,
    "disableconnectionsharing": INTEGER,
    "support url": STRING,
    "eventloguploadaddress": STRING,
    # RemoteApp
    "remoteapplicationmode": INTEGER,
    "remoteapplicationprogram": STRING,
    "remoteapplicationname": STRING,
    "remoteapplicationcmdline": STRING,
    "remoteapplicationexpandcmdline": INTEGER,
    "remoteapplicationexpandworkingdir": INTEGER,
    "remoteapplicationfile": STRING,
    "remoteapplicationicon": STRING,
    "remoteapplicationguid": STRING,
    "remoteapplicationfileextensions": STRING,
    "disableremoteappcapscheck": INTEGER,
    "alternate shell": STRING,
    "shell working directory": STRING,
    # Session behaviour
    "autoreconnection enabled": INTEGER,
    "autoreconnect max retries": INTEGER,
    "bandwidthautodetect": INTEGER,
    "networkautodetect": INTEGER,
    "connection type": INTEGER,
    "compression": INTEGER,
    "videoplaybackmode": INTEGER,
    "keyboardhook": INTEGER,
    "displayconnectionbar": INTEGER,
    # Device redirection
    "audiomode": INTEGER,
    "audiocapturemode": INTEGER,
    "encode redirected video capture": INTEGER,
    "redirected video capture encoding quality": INTEGER,
    "camerastoredirect": STRING,
    "devicestoredirect": STRING,
    "drivestoredirect": STRING,
    "usbdevicestoredirect": STRING,
    "redirectclipboard": INTEGER,
    "redirectprinters": INTEGER,
    "redirectsmartcards": INTEGER,
    "redirectcomports": INTEGER,
    "redirectdrives": INTEGER,
    "redirectposdevices": INTEGER,
    "redirectdirectx": INTEGER,
    "redirectlocation": INTEGER,
    # Display
    "screen mode id": INTEGER,
    "use multimon": INTEGER,
    "selectedmonitors": STRING,
    "maximizetocurrentdisplays": INTEGER,
    "singlemoninwindowedmode": INTEGER,
    "span monitors": INTEGER,
    "smart sizing": INTEGER,
    "dynamic resolution": INTEGER,
    "desktop size id": INTEGER,
    "desktopheight": INTEGER,
    "desktopwidth": INTEGER,
    "desktopscalefactor": INTEGER,
    "session bpp": INTEGER,
    "allow font smoothing": INTEGER,
    "allow desktop composition": INTEGER,
    "disable wallpaper": INTEGER,
    "disable full window drag": INTEGER,
    "disable menu anims": INTEGER,
    "disable themes": INTEGER,
    "bitmapcachepersistenable": INTEGER,
}

# Settings the control plane writes into every file. A pool cannot set them: they decide where the
# client connects (the routing name, the gateway, the ticket), what it launches, and the signature.
RESERVED_PROPERTIES: frozenset[str] = frozenset({
    "full address",
    "alternate full address",
    "server port",
    "gatewayhostname",
    "gatewayusagemethod",
    "gatewayprofileusagemethod",
    "gatewaycredentialssource",
    "gatewayaccesstoken",
    "signscope",
    "signature",
    "workspace id",
    "workspaceid",
    "use redirection server name",
    "loadbalanceinfo",
    "pcb",
    "remoteapplicationmode",
    "remoteapplicationprogram",
    "remoteapplicationname",
    # Per RemoteApp, from its own settings (the arguments follow its command-line policy).
    "remoteapplicationcmdline",
    "remoteapplicationfile",
    "remoteapplicationicon",
    "remoteapplicationguid",
    "remoteapplicationfileextensions",
    "disableremoteappcapscheck",
    "alternate shell",
})

MAX_TEXT_LENGTH = 32_000
MAX_PROPERTIES = 200
MAX_VALUE_LENGTH = 1_000
# Values FreeRDP reads with strtol into 32-bit settings; plain decimal keeps every client agreeing.
_INTEGER = re.compile(r"^[+-]?[0-9]{1,10}$")
_INT_RANGE = (-(2**31), 2**31 - 1)
# C0 and C1 control characters other than tab, and the Unicode line and paragraph separators: they have
# no place in a setting.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


class RdpPropertiesError(ValueError):
    """Custom RDP properties that cannot be used; ``problems`` has one message per bad line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _problem_with(name: str, type_: str, value: str) -> str | None:
    """Why ``name:type_:value`` cannot be a custom property, or None when it can."""
    if type_ not in TYPE_NAMES:
        return f"the type must be s (string), i (integer) or b (binary), not {type_!r}"
    known_type = KNOWN_PROPERTIES.get(name)
    if known_type is None:
        return f"'{name}' is not a known .rdp setting"
    if name in RESERVED_PROPERTIES:
        return f"'{name}' is set by the control plane and cannot be changed per host pool"
    if type_ != known_type:
        return f"'{name}' takes {TYPE_NAMES[known_type]}, not {TYPE_NAMES[type_]}"
    if len(value) > MAX_VALUE_LENGTH:
        return f"the value of '{name}' is longer than {MAX_VALUE_LENGTH} characters"
    if _CONTROL.search(value):
        return f"the value of '{name}' contains a control character"
    if type_ == INTEGER:
        if not _INTEGER.match(value) or not _INT_RANGE[0] <= int(value) <= _INT_RANGE[1]:
            return f"'{name}' needs a whole number, got {value!r}"
    return None


@dataclass(frozen=True)
class RdpProperty(rdpfile.Setting):
    """One validated custom setting. Creating one checks it, so a reserved setting cannot exist."""

    def __post_init__(self) -> None:
        problem = _problem_with(self.name, self.type, self.value)
        if problem:
            raise RdpPropertiesError([problem])


def parse_rdp_properties(text: str) -> list[RdpProperty]:
    """The properties in ``text`` (one per line, blank lines ignored), or RdpPropertiesError listing
    every bad line by number."""
    if not text or not text.strip():
        return []
    if len(text) > MAX_TEXT_LENGTH:
        raise RdpPropertiesError([f"The custom RDP properties are longer than {MAX_TEXT_LENGTH} characters."])
    lines = rdpfile.split_lines(text, keep_blank=True)
    if len([line for line in lines if line.strip()]) > MAX_PROPERTIES:
        raise RdpPropertiesError([f"At most {MAX_PROPERTIES} custom RDP properties are allowed."])

    properties: list[RdpProperty] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        parsed = rdpfile.parse_line(line)
        if parsed is None:
            problem = "expected 'name:type:value', for example 'audiomode:i:0'"
        else:
            name, type_, value = parsed.name, parsed.type, parsed.value
            problem = _problem_with(name, type_, value)
            if problem is None and name in seen:
                problem = f"'{name}' is already set on line {seen[name]}"
            if problem is None:
                seen[name] = number
                properties.append(RdpProperty(name, type_, value))
        if problem:
            if ";" in line:
                problem += " (put each setting on its own line, not separated by ';')"
            shown = line if len(line) <= 60 else line[:57] + "..."
            problems.append(f"Line {number} ({shown!r}): {problem}.")
    if problems:
        logger.info("refused custom RDP properties: %d bad line(s)", len(problems))
        raise RdpPropertiesError(problems)
    return properties
