"""GET /RDWeb/Feed/webfeed.aspx: the MS-TSWP ResourceCollection for the caller, valid in both schemas."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from lxml import etree

from feed.models import ApplicationGroup, Assignment, RemoteApp, Workspace
from feed.webfeed import NAMESPACE, resource_id
from tests.feed.conftest import SCHEMAS

NS = {"t": NAMESPACE}
URL = "/RDWeb/Feed/webfeed.aspx"
RADC_2_0 = "application/x-msts-radc+xml; radc_schema_version=2.0"


def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def _document(response) -> etree._Element:
    assert response.status_code == 200, response.content
    return etree.fromstring(response.content)


@pytest.fixture
def everything(desktop_group, apps_through_group):
    """The member's desktop (own assignment) and RemoteApp (group assignment)."""


def test_by_default_it_serves_schema_1_1_as_text_xml_and_validates(member_api, everything):
    response = member_api.get(URL)

    assert response["Content-Type"] == "text/xml; charset=utf-8"
    document = _document(response)
    _schema("tswf-1.1.xsd").assertValid(document)
    assert document.get("SchemaVersion") == "1.1"


def test_asked_for_2_0_it_serves_the_radc_type_and_validates(member_api, everything):
    response = member_api.get(URL, HTTP_ACCEPT=RADC_2_0)

    assert response["Content-Type"] == "application/x-msts-radc+xml; charset=utf-8"
    document = _document(response)
    _schema("tswf-2.0.xsd").assertValid(document)
    assert document.get("SchemaVersion") == "2.0"


@pytest.mark.parametrize("accept", ["application/x-msts-radc+xml; radc_schema_version=9.9",
                                    "application/x-msts-radc+xml; radc_schema_version", "garbage;;;=,",
                                    "x" * 5000, "*/*"])
def test_malformed_or_unknown_accept_headers_fall_back_to_1_1(member_api, everything, accept):
    response = member_api.get(URL, HTTP_ACCEPT=accept)

    assert response["Content-Type"] == "text/xml; charset=utf-8"
    _schema("tswf-1.1.xsd").assertValid(_document(response))


@pytest.mark.parametrize("query, version", [("2.0", "2.0"), ("3.0", "1.1"), ("2.0'; --", "1.1"), ("", "1.1")])
def test_the_schema_version_may_be_asked_in_the_url_and_unknown_ones_fall_back(member_api, everything, query,
                                                                                version):
    response = member_api.get(URL, {"radc_schema_version": query})

    assert response["Content-Type"] == "text/xml; charset=utf-8"
    document = _document(response)
    assert document.get("SchemaVersion") == version
    _schema("tswf-1.1.xsd" if version == "1.1" else "tswf-2.0.xsd").assertValid(document)


def test_the_short_url_serves_the_same_feed(member_api, everything):
    document = _document(member_api.get("/feed/webfeed.aspx"))

    assert len(document.findall(".//t:Resource", NS)) == 2


def test_it_lists_the_callers_resources_with_stable_ids(member_api, everything, settings):
    first = _document(member_api.get(URL))
    second = _document(member_api.get(URL, HTTP_ACCEPT=RADC_2_0))

    resources = {r.get("Alias"): r for r in first.findall(".//t:Resource", NS)}
    assert {alias: r.get("Type") for alias, r in resources.items()} == {
        "dag-a/desktop": "Desktop", "rag-a/notepad": "RemoteApp"}
    assert resources["dag-a/desktop"].get("ID") == resource_id(settings.FEED_PUBLISHER_ID, "dag-a/desktop")
    assert [r.get("ID") for r in first.findall(".//t:Resource", NS)] == \
        [r.get("ID") for r in second.findall(".//t:Resource", NS)]
    publisher = first.find("t:Publisher", NS)
    assert (publisher.get("Name"), publisher.get("ID")) == ("Contoso Workspace", settings.FEED_PUBLISHER_ID)
    assert [s.get("ID") for s in publisher.findall(".//t:TerminalServer", NS)] == ["pool-a"]


def test_its_icon_and_rdp_links_work_for_the_caller(member_api, everything, signing_ca):
    document = _document(member_api.get(URL))

    app = document.find(".//t:Resource[@Alias='rag-a/notepad']", NS)
    urls = {element.tag.split("}")[1]: element.get("FileURL") for element in app.find("t:Icons", NS)}
    rdp_url = app.find(".//t:ResourceFile", NS).get("URL")
    assert urlsplit(rdp_url).path == "/feed/rdp/rag-a/notepad.rdp"
    assert member_api.get(urls["IconRaw"])["Content-Type"] == "image/x-icon"
    assert member_api.get(urls["Icon32"])["Content-Type"] == "image/png"
    assert member_api.get(rdp_url)["Content-Type"] == "application/x-rdp"
    assert [e.get("Name") for e in app.findall(".//t:FileExtension", NS)] == [".txt", ".log"]


def test_an_outsider_gets_an_empty_but_valid_feed(outsider_api, everything):
    document = _document(outsider_api.get(URL))

    _schema("tswf-1.1.xsd").assertValid(document)
    assert document.findall(".//t:Resource", NS) == []


def test_anonymous_clients_get_401_with_a_bearer_challenge(anonymous_api, everything):
    response = anonymous_api.get(URL, HTTP_ACCEPT=RADC_2_0)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_browser_session_is_accepted(client, member, everything):
    client.force_login(member)

    assert client.get(URL).status_code == 200


def test_hidden_remoteapps_appear_only_in_2_1_and_marked_not_shown(member_api, everything, apps_through_group):
    RemoteApp.objects.filter(pk=apps_through_group.pk).update(show_in_feed=False)

    in_1_1 = _document(member_api.get(URL))
    in_2_1 = _document(member_api.get(URL, HTTP_ACCEPT="application/x-msts-radc+xml; radc_schema_version=2.1"))

    assert [r.get("Alias") for r in in_1_1.findall(".//t:Resource", NS)] == ["dag-a/desktop"]
    hidden = in_2_1.find(".//t:Resource[@Alias='rag-a/notepad']", NS)
    assert hidden.get("ShowByDefault") == "false"


def test_with_several_workspaces_it_uses_the_feed_name_and_a_folder_each(member, member_api, everything,
                                                                        pooled_pool, settings):
    lab = Workspace.objects.create(name="lab", friendly_name="Lab")
    group = ApplicationGroup.objects.create(name="dag-lab", friendly_name="Lab desktop", group_type="desktop",
                                            host_pool=pooled_pool, workspace=lab)
    Assignment.objects.create(application_group=group, user=member)

    document = _document(member_api.get(URL, HTTP_ACCEPT=RADC_2_0))

    _schema("tswf-2.0.xsd").assertValid(document)
    assert document.find("t:Publisher", NS).get("Name") == settings.FEED_PUBLISHER_NAME
    folders = {r.get("Alias"): r.find("t:Folders/t:Folder", NS).get("Name")
               for r in document.findall(".//t:Resource", NS)}
    assert folders == {"dag-a/desktop": "/Contoso Workspace", "rag-a/notepad": "/Contoso Workspace",
                       "dag-lab/desktop": "/Lab"}
    # Still one terminal server: both workspaces use the same pool.
    assert len(document.findall(".//t:TerminalServer", NS)) == 1


def test_the_webfeed_takes_a_fixed_number_of_queries(member_api, everything, django_assert_num_queries):
    member_api.get(URL)  # the token's last-used time is written on first use only

    # The token lookup, then desktops and RemoteApps.
    with django_assert_num_queries(3):
        member_api.get(URL)
