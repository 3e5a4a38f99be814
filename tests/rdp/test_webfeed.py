"""The MS-TSWP webfeed: schema-valid 1.1 and 2.x documents, stable IDs, content negotiation."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from feed.webfeed import (
    CONTENT_TYPE_RADC,
    CONTENT_TYPE_XML,
    NAMESPACE,
    FeedPublisher,
    FeedResource,
    FeedTerminalServer,
    WebFeedError,
    negotiate_schema,
    render_webfeed,
    resource_id,
)

SCHEMAS = Path(__file__).parent / "schemas"
NS = {"t": NAMESPACE}
WHEN = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def _resource(alias: str, **overrides) -> FeedResource:
    values = dict(
        alias=alias, title=alias.title(), resource_type="RemoteApp",
        rdp_url=f"/RDWeb/Feed/rdp/{alias}.rdp", icon_url=f"/RDWeb/Feed/icon/{alias}.ico",
        icon_png32_url=f"/RDWeb/Feed/icon/{alias}_32x32.png", terminal_server_id="pool-a", last_updated=WHEN,
    )
    values.update(overrides)
    return FeedResource(**values)


def _publisher(*resources: FeedResource) -> FeedPublisher:
    return FeedPublisher(
        id="feed.example.net", name="Contoso Workspace", last_updated=WHEN,
        resources=resources or (
            _resource("dag-a", title="Office desktop", resource_type="Desktop"),
            _resource("notepad", file_extensions=(".txt", ".log")),
        ),
        terminal_servers=(FeedTerminalServer(id="pool-a", name="pool-a.hosts.example.net", last_updated=WHEN),),
    )


def _parse(document: bytes) -> etree._Element:
    return etree.fromstring(document)


# --- schema validity -------------------------------------------------------------------------


def test_the_1_1_feed_validates_against_the_1_1_schema():
    document = _parse(render_webfeed(_publisher(), "1.1", pub_date=WHEN))

    _schema("tswf-1.1.xsd").assertValid(document)


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_the_2_x_feeds_validate_against_the_2_0_schema(version):
    document = _parse(render_webfeed(_publisher(), version, pub_date=WHEN))

    _schema("tswf-2.0.xsd").assertValid(document)
    assert document.get("SchemaVersion") == version


def test_the_schemas_tell_the_versions_apart():
    # Folders and PrimaryHandler are 2.0 features: the 1.1 schema must refuse them.
    assert not _schema("tswf-1.1.xsd").validate(_parse(render_webfeed(_publisher(), "2.0", pub_date=WHEN)))
    assert not _schema("tswf-2.0.xsd").validate(_parse(render_webfeed(_publisher(), "1.1", pub_date=WHEN)))


def test_the_1_1_schema_accepts_a_feed_shaped_like_windows_rd_web():
    # The shape of MS-TSWP §4.1.1 (a Windows Server feed), to show the strict schema is not too strict.
    sample = b"""<?xml version="1.0" encoding="utf-8"?>
<ResourceCollection PubDate="2010-09-02T22:22:25.295284Z" SchemaVersion="1.1"
    xmlns="http://schemas.microsoft.com/ts/2007/05/tswf">
 <Publisher LastUpdated="2010-09-02T22:22:25.295284Z" Name="Default Connection" ID="host.example" Description="">
  <Resources>
   <Resource ID="0123456789abcdef0123456789abcdef01234567" Alias="paint-Collection" Title="Paint"
       LastUpdated="2010-09-02T22:22:25.2796622Z" Type="RemoteApp">
    <Icons>
     <IconRaw FileType="Ico" FileURL="/RDWeb/Pages/rdp/paint.ico?hash=abc%3D" />
     <Icon32 Dimensions="32x32" FileType="Png" FileURL="/RDWeb/Pages/rdp/paint_32x32.png" />
    </Icons>
    <FileExtensions><FileExtension Name=".bmp" /></FileExtensions>
    <HostingTerminalServers>
     <HostingTerminalServer>
      <ResourceFile FileExtension=".rdp" URL="/RDWeb/Pages/rdp/host-paint-Collection.rdp" />
      <TerminalServerRef Ref="host" />
     </HostingTerminalServer>
    </HostingTerminalServers>
   </Resource>
  </Resources>
  <TerminalServers><TerminalServer ID="host" Name="host.example" LastUpdated="2010-09-02T22:22:25Z" /></TerminalServers>
 </Publisher>
</ResourceCollection>"""

    _schema("tswf-1.1.xsd").assertValid(_parse(sample))


# --- the document ----------------------------------------------------------------------------


def test_the_document_starts_with_a_utf8_declaration_and_the_tswf_namespace():
    document = render_webfeed(_publisher(), "1.1", pub_date=WHEN)

    assert document.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<ResourceCollection')
    root = _parse(document)
    assert root.tag == f"{{{NAMESPACE}}}ResourceCollection"
    assert root.get("PubDate") == "2026-11-24T10:00:00Z"


def test_a_resource_carries_its_icons_rdp_url_and_terminal_server():
    root = _parse(render_webfeed(_publisher(), "2.0", pub_date=WHEN))

    (notepad,) = root.xpath("//t:Resource[@Alias='notepad']", namespaces=NS)
    assert notepad.get("Type") == "RemoteApp"
    assert notepad.xpath("t:Icons/t:IconRaw/@FileURL", namespaces=NS) == ["/RDWeb/Feed/icon/notepad.ico"]
    assert notepad.xpath("t:Icons/t:Icon32/@FileURL", namespaces=NS) == ["/RDWeb/Feed/icon/notepad_32x32.png"]
    assert notepad.xpath("t:FileExtensions/t:FileExtension/@Name", namespaces=NS) == [".txt", ".log"]
    assert notepad.xpath("t:Folders/t:Folder/@Name", namespaces=NS) == ["/"]
    assert notepad.xpath(".//t:ResourceFile/@URL", namespaces=NS) == ["/RDWeb/Feed/rdp/notepad.rdp"]
    assert notepad.xpath(".//t:TerminalServerRef/@Ref", namespaces=NS) == ["pool-a"]


def test_a_resource_without_file_types_has_an_empty_file_extensions_element():
    root = _parse(render_webfeed(_publisher(), "1.1", pub_date=WHEN))

    (extensions,) = root.xpath("//t:Resource[@Alias='dag-a']/t:FileExtensions", namespaces=NS)
    assert len(extensions) == 0


def test_only_2_1_says_show_by_default_and_only_2_x_has_folders():
    v11, v20, v21 = (_parse(render_webfeed(_publisher(), v, pub_date=WHEN)) for v in ("1.1", "2.0", "2.1"))

    assert not v11.xpath("//t:Folders", namespaces=NS) and v20.xpath("//t:Folders", namespaces=NS)
    assert not v20.xpath("//@ShowByDefault") and not v11.xpath("//@ShowByDefault")
    assert v21.xpath("//t:Resource/@ShowByDefault", namespaces=NS) == ["true", "true"]
    assert v20.xpath("//t:Publisher/@SupportsReconnect", namespaces=NS) == ["false"]
    assert not v11.xpath("//@SupportsReconnect")


def test_titles_with_markup_characters_are_escaped_and_read_back_exactly():
    title = 'Tom & Jerry\'s <"Editor"> ]]>'
    document = render_webfeed(_publisher(_resource("notepad", title=title)), "1.1", pub_date=WHEN)

    assert b"Tom &amp; Jerry's &lt;&quot;Editor&quot;&gt; ]]&gt;" in document
    (resource,) = _parse(document).xpath("//t:Resource", namespaces=NS)
    assert resource.get("Title") == title


def test_characters_xml_cannot_carry_are_replaced_not_fatal():
    document = render_webfeed(_publisher(_resource("notepad", title="Bell\x07")), "1.1", pub_date=WHEN)

    (resource,) = _parse(document).xpath("//t:Resource", namespaces=NS)
    assert resource.get("Title") == "Bell\ufffd"


def test_timestamps_are_utc_with_a_z():
    local = datetime(2026, 11, 24, 11, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1)))
    root = _parse(render_webfeed(_publisher(_resource("notepad", last_updated=local)), "1.1", pub_date=WHEN))

    assert root.xpath("//t:Resource/@LastUpdated", namespaces=NS) == ["2026-11-24T10:00:00.250000Z"]


# --- stable resource IDs ---------------------------------------------------------------------


def test_resource_ids_are_40_hex_stable_and_distinct_per_publisher_and_alias():
    first = resource_id("feed.example.net", "notepad")

    assert re.fullmatch(r"[0-9a-f]{40}", first)
    assert resource_id("feed.example.net", "notepad") == first
    assert resource_id("feed.example.net", "wordpad") != first
    assert resource_id("other.example.net", "notepad") != first


def test_the_feed_uses_the_same_id_on_every_request():
    ids = [_parse(render_webfeed(_publisher(), "1.1")).xpath("//t:Resource/@ID", namespaces=NS) for _ in range(2)]

    assert ids[0] == ids[1] == [resource_id("feed.example.net", "dag-a"), resource_id("feed.example.net", "notepad")]


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("publisher, message", [
    (_publisher(_resource("a"), _resource("A")), "aliases must be unique"),
    (_publisher(_resource("a", resource_type="App")), "has type"),
    (_publisher(_resource("a", terminal_server_id="nowhere")), "does not list"),
    (_publisher(_resource("a", file_extensions=("txt",))), "invalid file extension"),
    (_publisher(_resource("a", folders=("Sub",))), "folders start with"),
    (_publisher(_resource("a", last_updated=datetime(2026, 1, 1))), "timezone-aware"),
])
def test_it_refuses_feed_data_that_would_be_invalid(publisher, message):
    with pytest.raises(WebFeedError, match=message):
        render_webfeed(publisher, "2.0", pub_date=WHEN)


def test_it_refuses_an_unknown_schema_version():
    with pytest.raises(WebFeedError, match="schema version"):
        render_webfeed(_publisher(), "3.0", pub_date=WHEN)


# --- content negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize("accept, query, expected", [
    (None, None, ("1.1", CONTENT_TYPE_XML)),
    ("*/*", None, ("1.1", CONTENT_TYPE_XML)),
    ("application/x-msts-radc+xml; radc_schema_version=2.0", None, ("2.0", CONTENT_TYPE_RADC)),
    ("application/x-msts-radc+xml;radc_schema_version=2.0,text/xml", None, ("2.0", CONTENT_TYPE_RADC)),
    ("Application/X-MSTS-RADC+XML; RADC_SCHEMA_VERSION=\"2.1\"", None, ("2.1", CONTENT_TYPE_RADC)),
    ("application/x-msts-radc+xml; radc_schema_version=1.1", None, ("1.1", CONTENT_TYPE_XML)),
    ("application/x-msts-radc+xml; radc_schema_version=3.0", None, ("1.1", CONTENT_TYPE_XML)),
    ("application/x-msts-radc+xml; q=0; radc_schema_version=2.0", None, ("1.1", CONTENT_TYPE_XML)),
    ("text/xml; radc_schema_version=2.0", None, ("1.1", CONTENT_TYPE_XML)),
    # Malformed headers fall back to 1.1.
    ("application/x-msts-radc+xml; radc_schema_version", None, ("1.1", CONTENT_TYPE_XML)),
    ("application/x-msts-radc+xml, radc_schema_version=2.0", None, ("1.1", CONTENT_TYPE_XML)),
    (";;;,,,==", None, ("1.1", CONTENT_TYPE_XML)),
    ("application/x-msts-radc+xml; radc_schema_version=2.0" + " " * 5000, None, ("1.1", CONTENT_TYPE_XML)),
    # The URL parameter selects the version; only the Accept header earns the radc content type.
    (None, "2.0", ("2.0", CONTENT_TYPE_XML)),
    ("text/html", "2.1", ("2.1", CONTENT_TYPE_XML)),
    (None, "2.5", ("1.1", CONTENT_TYPE_XML)),
])
def test_negotiate_schema(accept, query, expected):
    assert negotiate_schema(accept, query) == expected
