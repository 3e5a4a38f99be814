"""A desktop in the browser: the session page, who may mint a web ticket for it (POST, CSRF, the same
entitlement as the .rdp download), and what the page learns about the connection its ticket opened."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from lxml import html

from broker.choices import ConnectionTransport
from core.tickets import verify_connection_ticket
from feed.models import Assignment, Desktop
from gateway import records
from wire.errors import describe

PAGE = "/web/dag-a/desktop/"
TICKET = "/web/dag-a/desktop/ticket/"
CONNECTION = "/web/dag-a/desktop/connection/"


@pytest.fixture
def desktop(desktop_group) -> Desktop:
    return Desktop.objects.get(application_group=desktop_group)


@pytest.fixture
def csrf_client(member) -> Client:
    """A browser-like client: Django's CSRF check on, signed in as the member."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    return client


def _csrf_token(client: Client) -> str:
    page = html.fromstring(client.get(PAGE, secure=True).content)
    return page.get_element_by_id("session").get("data-csrf-token")


SAME_ORIGIN = {"HTTP_ORIGIN": "https://testserver", "secure": True}  # what a browser's fetch() sends


def _mint(client: Client):
    return client.post(TICKET, HTTP_X_CSRFTOKEN=_csrf_token(client), **SAME_ORIGIN)


# --- the session page ----------------------------------------------------------------------------


def test_the_page_asks_anonymous_visitors_to_sign_in(client, desktop):
    response = client.get(PAGE, secure=True)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={PAGE}"


def test_the_page_loads_the_vendored_client_and_keeps_the_ticket_out_of_it(client, member, desktop):
    client.force_login(member)
    response = client.get(PAGE, secure=True)
    assert response.status_code == 200
    session = html.fromstring(response.content).get_element_by_id("session")
    assert session.get("data-ticket-url") == TICKET
    assert session.get("data-component-url") == "/static/feed/vendor/iron-remote-desktop-0.11.0/iron-remote-desktop.js"
    assert session.get("data-backend-url") == ("/static/feed/vendor/iron-remote-desktop-rdp-0.7.0/"
                                               "iron-remote-desktop-rdp.js")
    assert b"conn." not in response.content  # no ticket in the page: it is minted by a POST, per click
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_only_the_session_page_may_run_webassembly_and_reach_the_gateway(client, member, desktop, settings):
    settings.GATEWAY_PUBLIC_HOST = "gw.example.net"
    settings.GATEWAY_PUBLIC_PORT = 9443
    client.force_login(member)
    policy = _directives(client.get(PAGE, secure=True)["Content-Security-Policy"])
    assert policy["script-src"] == {"'self'", "'wasm-unsafe-eval'"}
    assert policy["connect-src"] == {"'self'", "data:", "wss://gw.example.net:9443"}
    assert "'unsafe-inline'" not in policy["style-src-elem"] and "'self'" in policy["style-src-elem"]
    assert any(source.startswith("'sha256-") for source in policy["style-src-elem"])
    assert policy["style-src-attr"] == {"'unsafe-inline'"}
    home = _directives(client.get("/", secure=True)["Content-Security-Policy"])
    assert home["script-src"] == {"'self'"} and home["connect-src"] == {"'self'"}
    assert "style-src-attr" not in home


def _directives(header: str) -> dict[str, set[str]]:
    return {name: set(values) for name, *values in (part.split() for part in header.split(";") if part.strip())}


def test_the_page_refuses_a_desktop_that_is_not_the_users(client, outsider, desktop):
    client.force_login(outsider)
    response = client.get(PAGE, secure=True)
    assert response.status_code == 404
    assert b"No such desktop is assigned to you" in response.content


def test_a_remoteapp_is_not_offered_in_the_browser_and_the_page_says_why(client, member, apps_through_group):
    client.force_login(member)
    response = client.get("/web/rag-a/notepad/", secure=True)
    assert response.status_code == 404
    assert b"Notepad is a RemoteApp" in response.content
    assert client.post("/web/rag-a/notepad/ticket/", secure=True).status_code == 404


def test_the_users_page_offers_desktops_in_the_browser_and_not_remoteapps(client, member, desktop,
                                                                          apps_through_group):
    client.force_login(member)
    page = html.fromstring(client.get("/", secure=True).content)
    links = page.xpath("//a[normalize-space()='Open in browser']")
    assert [link.get("href") for link in links] == [PAGE]
    tile = links[0].getparent()
    assert tile.xpath(".//a[@class='tile']")[0].get("href") == "/feed/rdp/dag-a/desktop.rdp"
    assert "RemoteApps need a Remote Desktop client" in page.text_content()


# --- who may mint a web ticket ------------------------------------------------------------------


def test_a_member_gets_a_single_use_web_ticket_for_their_desktop(csrf_client, member, desktop, settings):
    settings.GATEWAY_PUBLIC_HOST = "gw.example.net"
    settings.GATEWAY_PUBLIC_PORT = 9443
    response = _mint(csrf_client)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["gateway_url"] == "wss://gw.example.net:9443/remoteDesktopGateway/rdcleanpath"
    assert body["destination"] == "pool-a" and body["username"] == "member"
    ticket = verify_connection_ticket(body["ticket"])
    assert (ticket.user_id, ticket.resource, ticket.host_pool_name, ticket.single_use) == (
        member.pk, "dag-a/desktop", "pool-a", True)
    assert ticket.expires_at - ticket.issued_at == settings.WEB_TICKET_LIFETIME
    assert body["expires_in"] == 60
    assert _mint(csrf_client).json()["ticket"] != body["ticket"]  # one per click


def test_an_anonymous_caller_gets_no_ticket(desktop):
    response = Client().post(TICKET, secure=True)
    assert response.status_code == 401
    assert response.json()["error_code"] == "ConnectionFailedUserNotAuthorized"
    assert "ticket" not in response.json()


def test_a_user_who_is_not_assigned_gets_no_ticket(outsider, desktop):
    client = Client()
    client.force_login(outsider)
    response = client.post(TICKET, secure=True)
    assert response.status_code == 404
    body = response.json()
    assert body["error_code"] == "ConnectionFailedUserNotAuthorized"
    assert body["message"] == describe("ConnectionFailedUserNotAuthorized").message
    assert "ticket" not in body


def test_a_user_unassigned_after_opening_the_page_gets_no_ticket(csrf_client, member, desktop):
    token = _csrf_token(csrf_client)
    Assignment.objects.filter(user=member).delete()
    response = csrf_client.post(TICKET, HTTP_X_CSRFTOKEN=token, **SAME_ORIGIN)
    assert response.status_code == 404
    assert "ticket" not in response.json()


def test_a_ticket_is_minted_by_post_only(csrf_client, desktop):
    assert csrf_client.get(TICKET, secure=True).status_code == 405


def test_a_post_without_the_csrf_token_is_refused(csrf_client, desktop):
    response = csrf_client.post(TICKET, **SAME_ORIGIN)
    assert response.status_code == 403
    assert b"ticket" not in response.content.replace(b"ticket/", b"")


def test_a_post_from_another_origin_is_refused(csrf_client, desktop):
    token = _csrf_token(csrf_client)
    response = csrf_client.post(TICKET, HTTP_X_CSRFTOKEN=token, HTTP_ORIGIN="https://evil.example", secure=True)
    assert response.status_code == 403


# --- what became of the connection ----------------------------------------------------------------


def test_the_page_finds_the_connection_its_ticket_opened_and_explains_a_reuse(csrf_client, member, desktop):
    body = _mint(csrf_client).json()
    first = records.admit(body["ticket"], "198.51.100.7", "gw-test", transport=ConnectionTransport.RDCLEANPATH)
    again = records.admit(body["ticket"], "198.51.100.7", "gw-test", transport=ConnectionTransport.RDCLEANPATH)
    assert isinstance(first, records.Admission) and isinstance(again, records.Refusal)

    found = csrf_client.get(CONNECTION, {"activity": first.activity_id}, secure=True).json()
    assert found == {"activity_id": first.activity_id, "state": "started", "error_code": "",
                     "message": ""}
    # A used ticket's refusal is recorded under the user and resource it names (our signature holds), so it is
    # the latest attempt since the ticket was issued, and the page finds it with the code's documented message.
    latest = csrf_client.get(CONNECTION, {"since": body["issued_at"]}, secure=True).json()
    assert latest["activity_id"] == again.activity_id
    reused = csrf_client.get(CONNECTION, {"activity": again.activity_id, "code": again.code}, secure=True).json()
    assert reused == {"activity_id": again.activity_id, "state": "failed",
                      "error_code": "ConnectionFailedTicketAlreadyUsed",
                      "message": describe("ConnectionFailedTicketAlreadyUsed").message}


def test_another_users_connection_is_not_found(client, outsider, csrf_client, desktop):
    body = _mint(csrf_client).json()
    admitted = records.admit(body["ticket"], "198.51.100.7", "gw-test", transport=ConnectionTransport.RDCLEANPATH)
    client.force_login(outsider)
    response = client.get(CONNECTION, {"activity": admitted.activity_id}, secure=True)
    assert response.status_code == 404


def test_a_code_from_the_close_reason_without_a_record_gets_its_documented_message(csrf_client, desktop):
    response = csrf_client.get(CONNECTION, {"activity": "6f1e0d7c-3b7a-4c1e-9a57-0d9f1f3b2a10",
                                            "code": "ConnectionFailedOriginNotAllowed"}, secure=True)
    assert response.json()["message"] == describe("ConnectionFailedOriginNotAllowed").message


@pytest.mark.parametrize("query", [
    {"activity": "not-a-uuid"},
    {"since": "yesterday"},
    {"since": "2026-01-01T10:00:00"},  # no time zone
    {"since": (timezone.now() - timedelta(minutes=1)).isoformat(), "code": "<script>"},
    {},
])
def test_the_connection_lookup_validates_what_it_is_given(csrf_client, desktop, query):
    response = csrf_client.get(CONNECTION, query, secure=True)
    assert response.status_code == 400
    assert re.search(r"activity|since|code", response.json()["detail"])
