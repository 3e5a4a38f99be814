"""The MS-TSWP webfeed ("RemoteApp and Desktop Connections"): the ResourceCollection XML.

Windows' RADC and the Windows App on macOS, iOS and Android subscribe to this feed and show each
resource with its icon; launching one downloads its .rdp file. Schema 1.1 is what every client
reads; 2.0 adds folders and 2.1 ``ShowByDefault`` (MS-TSWP §2.2.1-§2.2.2, PROTOCOLS.md §3).

Pure functions over plain dataclasses; the view collects them from the models.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from lxml import etree

logger = logging.getLogger(__name__)

NAMESPACE = "http://schemas.microsoft.com/ts/2007/05/tswf"
SCHEMA_1_1 = "1.1"
SCHEMA_2_0 = "2.0"
SCHEMA_2_1 = "2.1"
SCHEMA_VERSIONS = (SCHEMA_1_1, SCHEMA_2_0, SCHEMA_2_1)
RADC_MEDIA_TYPE = "application/x-msts-radc+xml"
CONTENT_TYPE_XML = "text/xml; charset=utf-8"
CONTENT_TYPE_RADC = RADC_MEDIA_TYPE + "; charset=utf-8"
RESOURCE_TYPES = ("Desktop", "RemoteApp")
MAX_ACCEPT_LENGTH = 4096

_FILE_EXTENSION = re.compile(r"^\.[A-Za-z0-9_-]{1,32}$")
# Characters XML 1.0 cannot carry at all; replaced so one odd title cannot break the whole feed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class WebFeedError(ValueError):
    """Feed data that would make an invalid document; the message names the item."""


@dataclass(frozen=True)
class FeedTerminalServer:
    """A <TerminalServer>: for us, a host pool's routing name."""

    id: str
    name: str
    last_updated: datetime


@dataclass(frozen=True)
class FeedResource:
    """One desktop or RemoteApp as the feed lists it."""

    alias: str
    title: str
    resource_type: str  # "Desktop" or "RemoteApp"
    rdp_url: str
    icon_url: str  # the .ico (IconRaw)
    icon_png32_url: str  # the 32x32 .png (Icon32)
    terminal_server_id: str
    last_updated: datetime
    file_extensions: tuple[str, ...] = ()
    folders: tuple[str, ...] = ("/",)  # schema 2.0+
    show_by_default: bool = True  # schema 2.1


@dataclass(frozen=True)
class FeedPublisher:
    """The one <Publisher>: the workspace as the user sees it."""

    id: str  # globally unique: a GUID or the feed server's FQDN
    name: str
    last_updated: datetime
    resources: Sequence[FeedResource] = field(default_factory=tuple)
    terminal_servers: Sequence[FeedTerminalServer] = field(default_factory=tuple)
    description: str = ""


def resource_id(publisher_id: str, alias: str) -> str:
    """A stable ID for a resource: 40 hex characters, like Windows RD Web writes, the same on
    every request and different across publishers."""
    return hashlib.sha256(f"{publisher_id}\n{alias}".encode()).hexdigest()[:40]


def negotiate_schema(accept_header: str | None, query_value: str | None = None) -> tuple[str, str]:
    """The schema version to serve and the response Content-Type (MS-TSWP §2.2.1.4, §2.2.5).

    Clients ask with ``Accept: application/x-msts-radc+xml; radc_schema_version=2.0`` (or the
    same parameter in the URL). Only an Accept header asking for the radc type gets it back;
    anything else, unknown or malformed falls back to 1.1 as text/xml.
    """
    from_header = _version_from_accept(accept_header)
    if from_header:
        return from_header, CONTENT_TYPE_RADC
    query = (query_value or "").strip()
    if query in (SCHEMA_2_0, SCHEMA_2_1):
        return query, CONTENT_TYPE_XML
    return SCHEMA_1_1, CONTENT_TYPE_XML


def _version_from_accept(accept_header: str | None) -> str | None:
    if not accept_header or len(accept_header) > MAX_ACCEPT_LENGTH:
        return None
    best = None
    for media_range in accept_header.split(","):
        media_type, *params = [part.strip() for part in media_range.split(";")]
        if media_type.lower() != RADC_MEDIA_TYPE:
            continue
        values: dict[str, str] = {}
        for param in params:
            key, sep, value = param.partition("=")
            if not sep:
                return None  # a parameter without '=' is malformed: ignore the whole header
            values[key.strip().lower()] = value.strip().strip('"')
        if values.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue  # explicitly not acceptable
        version = values.get("radc_schema_version")
        if version in (SCHEMA_2_0, SCHEMA_2_1) and (best is None or version > best):
            best = version
    return best


# --- rendering ------------------------------------------------------------------------------


def _timestamp(value: datetime, what: str) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise WebFeedError(f"the {what} must be a timezone-aware datetime")
    text = value.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    return text + "Z"


def _xml_text(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise WebFeedError(f"the {what} must be text")
    cleaned = _NOT_XML.sub("\ufffd", value)
    if cleaned != value:
        logger.warning("replaced characters XML cannot carry in the %s %r", what, value[:80])
    return cleaned


def _element(parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{NAMESPACE}}}{tag}", attributes)


def _check(publisher: FeedPublisher) -> None:
    server_ids = [server.id for server in publisher.terminal_servers]
    if len(set(server_ids)) != len(server_ids):
        raise WebFeedError("terminal server IDs must be unique")
    aliases = [resource.alias for resource in publisher.resources]
    if len({alias.lower() for alias in aliases}) != len(aliases):
        raise WebFeedError("resource aliases must be unique")
    for resource in publisher.resources:
        if not resource.alias:
            raise WebFeedError("a resource has no alias")
        if resource.resource_type not in RESOURCE_TYPES:
            raise WebFeedError(f"resource {resource.alias!r} has type {resource.resource_type!r}, "
                               f"not one of {RESOURCE_TYPES}")
        if resource.terminal_server_id not in server_ids:
            raise WebFeedError(f"resource {resource.alias!r} names terminal server "
                               f"{resource.terminal_server_id!r}, which the feed does not list")
        for extension in resource.file_extensions:
            if not _FILE_EXTENSION.match(extension):
                raise WebFeedError(f"resource {resource.alias!r} has an invalid file extension {extension!r}")
        for folder in resource.folders:
            if not folder.startswith("/"):
                raise WebFeedError(f"resource {resource.alias!r} has folder {folder!r}; folders start with '/'")


def render_webfeed(publisher: FeedPublisher, schema_version: str, *, pub_date: datetime | None = None) -> bytes:
    """The ResourceCollection document for ``schema_version`` ("1.1", "2.0" or "2.1"), UTF-8."""
    if schema_version not in SCHEMA_VERSIONS:
        raise WebFeedError(f"schema version {schema_version!r} is not one of {SCHEMA_VERSIONS}")
    _check(publisher)
    v2 = schema_version != SCHEMA_1_1
    pub_date = pub_date or datetime.now(timezone.utc)

    root = etree.Element(f"{{{NAMESPACE}}}ResourceCollection", nsmap={None: NAMESPACE})
    root.set("PubDate", _timestamp(pub_date, "publication date"))
    root.set("SchemaVersion", schema_version)
    publisher_element = _element(
        root, "Publisher",
        LastUpdated=_timestamp(publisher.last_updated, "publisher's last update"),
        Name=_xml_text(publisher.name, "publisher name"),
        ID=_xml_text(publisher.id, "publisher ID"),
        Description=_xml_text(publisher.description, "publisher description"),
    )
    if v2:
        # MS-TSWP's 2.0 schema and Windows' own feeds put it here; false: no MS-RDWR reconnect.
        publisher_element.set("SupportsReconnect", "false")

    resources = _element(publisher_element, "Resources")
    for resource in publisher.resources:
        _render_resource(resources, resource, publisher.id, schema_version)

    servers = _element(publisher_element, "TerminalServers")
    for server in publisher.terminal_servers:
        _element(servers, "TerminalServer", ID=_xml_text(server.id, "terminal server ID"),
                 Name=_xml_text(server.name, "terminal server name"),
                 LastUpdated=_timestamp(server.last_updated, "terminal server's last update"))

    body = etree.tostring(root, encoding="utf-8", xml_declaration=False, pretty_print=True)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def _render_resource(parent: etree._Element, resource: FeedResource, publisher_id: str, schema_version: str) -> None:
    v2 = schema_version != SCHEMA_1_1
    element = _element(
        parent, "Resource",
        ID=resource_id(publisher_id, resource.alias),
        Alias=_xml_text(resource.alias, "resource alias"),
        Title=_xml_text(resource.title, "resource title"),
        LastUpdated=_timestamp(resource.last_updated, f"last update of {resource.alias!r}"),
        Type=resource.resource_type,
    )
    if schema_version == SCHEMA_2_1:
        element.set("ShowByDefault", "true" if resource.show_by_default else "false")

    # Always both: some clients refuse a resource without icons. IconRaw first (2.0 requires it).
    icons = _element(element, "Icons")
    _element(icons, "IconRaw", FileType="Ico", FileURL=_xml_text(resource.icon_url, "icon URL"))
    _element(icons, "Icon32", Dimensions="32x32", FileType="Png",
             FileURL=_xml_text(resource.icon_png32_url, "icon URL"))

    # Present even when empty: the spec says the server MUST send it empty.
    extensions = _element(element, "FileExtensions")
    for extension in resource.file_extensions:
        item = _element(extensions, "FileExtension", Name=extension)
        if v2:
            item.set("PrimaryHandler", "True")  # "reserved, MUST be True" (§2.2.2.2.3), spelt as Windows does

    if v2:
        folders = _element(element, "Folders")
        for folder in resource.folders:
            _element(folders, "Folder", Name=_xml_text(folder, "folder name"))

    hosting = _element(_element(element, "HostingTerminalServers"), "HostingTerminalServer")
    _element(hosting, "ResourceFile", FileExtension=".rdp", URL=_xml_text(resource.rdp_url, "resource file URL"))
    _element(hosting, "TerminalServerRef", Ref=_xml_text(resource.terminal_server_id, "terminal server ID"))
