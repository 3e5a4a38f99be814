"""The connector reads what it needs from the feed's .rdp files, and refuses files it cannot use."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.tickets import issue_connection_ticket
from feed.rdpfile import DESKTOP, RdpResource, build_rdp
from gateway.connector.rdpfile import (
    ConnectionFileError,
    parse_connection_file,
    parse_gateway_address,
    read_connection_file,
)
from wire import rdpfile, tickets

pytestmark = pytest.mark.django_db


def feed_file(ticket: str, gateway_host: str = "gw.example.net", gateway_port: int = 8443) -> str:
    """The text the feed serves for a desktop (before signing and encoding)."""
    return build_rdp(routing_name="pool-a", gateway_host=gateway_host, gateway_port=gateway_port,
                     access_token=ticket, workspace_id="contoso",
                     resource=RdpResource(kind=DESKTOP, alias="dag-a", title="Office desktop"))


@pytest.fixture
def ticket(member, desktop_group, pooled_pool) -> str:
    return issue_connection_ticket(user=member, application_group_id=desktop_group.pk, resource="dag-a",
                                   host_pool_id=pooled_pool.pk, host_pool_name=pooled_pool.name,
                                   lifetime=timedelta(hours=1))


def test_it_reads_the_gateway_and_ticket_of_a_utf16_feed_file(ticket):
    file = parse_connection_file(rdpfile.encode(feed_file(ticket)))

    assert (file.gateway_host, file.gateway_port, file.ticket) == ("gw.example.net", 8443, ticket)
    assert file.full_address == "pool-a"
    assert file.gateway_url == "wss://gw.example.net:8443/remoteDesktopGateway/"
    assert file.ticket_info.username == "member" and file.ticket_info.host_pool_name == "pool-a"


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf"], ids=["utf-8", "utf-8-bom"])
def test_it_reads_utf8_files_too(ticket, prefix):
    file = parse_connection_file(prefix + feed_file(ticket).encode())
    assert file.ticket == ticket


def test_it_refuses_an_expired_ticket(ticket):
    after_expiry = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(ConnectionFileError, match="expired at .* UTC; refresh your resources"):
        parse_connection_file(rdpfile.encode(feed_file(ticket)), now=after_expiry)


def test_it_refuses_a_file_without_a_ticket(ticket):
    text = feed_file(ticket).replace(f"gatewayaccesstoken:s:{ticket}", "gatewayaccesstoken:s:")
    with pytest.raises(ConnectionFileError, match="no connection ticket"):
        parse_connection_file(text.encode())


def test_it_refuses_a_file_without_a_gateway():
    with pytest.raises(ConnectionFileError, match="names no gateway"):
        parse_connection_file(b"full address:s:pool-a\r\ngatewayaccesstoken:s:abc\r\n")


def test_it_refuses_bytes_that_are_not_a_text_file():
    with pytest.raises(ConnectionFileError, match="neither UTF-16LE"):
        parse_connection_file(b"\x89PNG\r\n\x1a\n\xff\x00\xfe")


def test_a_ticket_it_cannot_read_is_left_to_the_gateway():
    file = parse_connection_file(b"gatewayhostname:s:gw.example.net\r\ngatewayaccesstoken:s:opaque-token\r\n")
    assert file.ticket == "opaque-token" and file.ticket_info is None


def test_names_are_case_insensitive_and_the_last_line_wins():
    file = parse_connection_file(b"GatewayHostname:s:old.example.net\r\ngatewayhostname:s:new.example.net:444\r\n"
                                 b"GATEWAYACCESSTOKEN:s:t1\r\nnot a setting\r\n")
    assert (file.gateway_host, file.gateway_port, file.ticket) == ("new.example.net", 444, "t1")


@pytest.mark.parametrize("value, expected", [
    ("gw.example.net", ("gw.example.net", 443)),
    ("gw.example.net:8443", ("gw.example.net", 8443)),
    ("127.0.0.1:8443", ("127.0.0.1", 8443)),
    ("[::1]:8443", ("::1", 8443)),
    ("[2001:db8::1]", ("2001:db8::1", 443)),
])
def test_gateway_addresses(value, expected):
    assert parse_gateway_address(value) == expected


@pytest.mark.parametrize("value", ["gw:0", "gw:99999", "gw:http", "[::1", "bad host!:443", ":443"])
def test_bad_gateway_addresses_are_refused(value):
    with pytest.raises(ConnectionFileError):
        parse_gateway_address(value)


def test_the_ticket_payload_gives_its_expiry_without_checking_the_signature():
    claims = tickets.connection_claims(user_id=5, username="alice", application_group_id=7, resource="pool-a",
                                       host_pool_id=3, host_pool_name="pool-a")
    unsigned, _ = tickets.unsigned(tickets.CONNECTION_KIND, claims, issued=1_999_999_000, lifetime_seconds=1000)
    info = tickets.read_connection_ticket(f"{unsigned}.not-a-real-signature")
    assert info.expires_at == datetime.fromtimestamp(2_000_000_000, UTC) and info.username == "alice"


@pytest.mark.parametrize("ticket", ["wht1.e30.sig", "wct1.!!!.sig", "wct1.e30.sig", "wct1.WzFd.sig"])
def test_unreadable_ticket_payloads_give_nothing(ticket):
    assert tickets.read_connection_ticket(ticket) is None  # host tickets, bad base64, no expiry, not an object


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConnectionFileError, match="cannot read"):
        read_connection_file(tmp_path / "missing.rdp")
