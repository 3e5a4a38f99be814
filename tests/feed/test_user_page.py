"""The user's page at /: tiles per workspace, one-click downloads, a subscribe panel; our own login."""
from __future__ import annotations

from datetime import timedelta

from lxml import html

from feed.models import RemoteApp
from tests.conftest import PASSWORD

TILES = "//a[@class='tile']"


def _page(response) -> html.HtmlElement:
    return html.fromstring(response.content)


def test_anonymous_visitors_are_sent_to_the_login_page(client, db):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_a_member_sees_tiles_with_icons_and_download_links(client, member, desktop_group, apps_through_group):
    client.force_login(member)

    response = client.get("/")

    assert response.status_code == 200
    page = _page(response)
    assert [h.text_content() for h in page.xpath("//section[@class='workspace']/h2")] == ["Contoso Workspace"]
    tiles = page.xpath(TILES)
    assert [t.get("href") for t in tiles] == ["/feed/rdp/dag-a/desktop.rdp", "/feed/rdp/rag-a/notepad.rdp"]
    assert all(t.get("download") is not None for t in tiles)
    assert [t.xpath(".//span[@class='tile-title']")[0].text_content() for t in tiles] == ["Office desktop", "Notepad"]
    assert tiles[0].xpath(".//img")[0].get("src").startswith("/feed/icon/dag-a/desktop.ico?v=")


def test_the_tiles_download_links_and_icons_work_in_the_session(client, member, desktop_group, signing_ca):
    client.force_login(member)
    tile = _page(client.get("/")).xpath(TILES)[0]

    assert client.get(tile.get("href"))["Content-Type"] == "application/x-rdp"
    assert client.get(tile.xpath(".//img")[0].get("src"))["Content-Type"] == "image/x-icon"


def test_the_subscribe_panel_gives_the_feed_url(client, member, desktop_group):
    client.force_login(member)

    page = _page(client.get("/"))

    assert page.get_element_by_id("webfeed-url").get("value") == "http://testserver/RDWeb/Feed/webfeed.aspx"


def test_hidden_remoteapps_get_no_tile(client, member, apps_through_group):
    RemoteApp.objects.filter(pk=apps_through_group.pk).update(show_in_feed=False)
    client.force_login(member)

    page = _page(client.get("/"))

    assert page.xpath(TILES) == []
    assert "No desktops or apps are assigned to you yet" in page.text_content()


def test_an_outsider_is_told_nothing_is_assigned(client, outsider, desktop_group):
    client.force_login(outsider)

    assert "No desktops or apps are assigned to you yet" in client.get("/").content.decode()


def test_the_page_and_its_stylesheet_need_nothing_from_outside(client, member, desktop_group):
    client.force_login(member)

    page = _page(client.get("/"))

    references = page.xpath("//link/@href") + page.xpath("//script/@src")
    assert references and all(ref.startswith("/") for ref in references)
    assert client.get(page.xpath("//link[@rel='stylesheet']/@href")[0]).status_code == 200


def test_the_login_page_signs_in_and_returns_to_the_page(client, member):
    assert client.get("/accounts/login/").status_code == 200

    response = client.post("/accounts/login/?next=/", {"username": "member", "password": PASSWORD, "next": "/"})

    assert (response.status_code, response["Location"]) == (302, "/")
    assert client.get("/").status_code == 200


def test_a_wrong_password_on_the_login_page_says_so(client, member):
    response = client.post("/accounts/login/", {"username": "member", "password": "wrong"})

    assert response.status_code == 200
    assert "did not match" in response.content.decode()


def test_the_login_page_shares_the_sign_in_rate_limit(client, member, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        client.post("/accounts/login/", {"username": "member", "password": "wrong"})

    response = client.post("/accounts/login/", {"username": "member", "password": PASSWORD})

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_signing_out_ends_the_session(client, member):
    client.force_login(member)

    response = client.post("/accounts/logout/")

    assert (response.status_code, response["Location"]) == (302, "/accounts/login/")
    assert client.get("/").status_code == 302


def test_the_panel_says_how_long_a_downloaded_file_works(client, member, desktop_group, settings):
    settings.CONNECTION_TICKET_LIFETIME = timedelta(hours=8)
    client.force_login(member)

    assert "for 8 hours after the download" in client.get("/").content.decode()
