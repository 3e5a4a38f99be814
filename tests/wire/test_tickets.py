"""The ticket envelope (wire/tickets.py): what a ticket looks like and what its payload says, read
without the server's key. Signing and checking tickets is core.tickets' (tests/tickets)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wire import base64url, tickets

CONNECTION = tickets.connection_claims(user_id=5, username="alice", application_group_id=7, resource="dag-a",
                                       host_pool_id=3, host_pool_name="pool-a")


def unsigned_connection_ticket(**changes) -> str:
    unsigned, _ = tickets.unsigned(tickets.CONNECTION_KIND, {**CONNECTION, **changes}, issued=1_900_000_000,
                                   lifetime_seconds=3600)
    return unsigned


def test_a_connection_ticket_reads_back_its_claims_without_the_key():
    ticket = unsigned_connection_ticket() + "." + "s" * tickets.SIGNATURE_LENGTH
    read = tickets.read_connection_ticket(ticket)
    assert (read.user_id, read.username, read.application_group_id, read.resource) == (5, "alice", 7, "dag-a")
    assert (read.host_pool_id, read.host_pool_name) == (3, "pool-a")
    assert read.issued_at == datetime.fromtimestamp(1_900_000_000, UTC)
    assert read.expires_at == datetime.fromtimestamp(1_900_003_600, UTC)


def test_the_payload_is_compact_json_in_base64url_with_the_documented_keys():
    unsigned = unsigned_connection_ticket()
    envelope = tickets.parse_envelope(unsigned + ".sig")
    assert envelope.kind == "wct1" and envelope.signature == "sig"
    assert envelope.signed_part == unsigned
    payload = base64url.decode(envelope.payload).decode()
    assert " " not in payload and set(tickets.decode_claims(envelope)) == set("jieungrhp")


def test_each_ticket_gets_its_own_id():
    first, jti1 = tickets.unsigned(tickets.HOST_KIND, tickets.host_claims(connection_activity_id="a-b", session_host_id=2),
                                   issued=1, lifetime_seconds=60)
    second, jti2 = tickets.unsigned(tickets.HOST_KIND, tickets.host_claims(connection_activity_id="a-b", session_host_id=2),
                                    issued=1, lifetime_seconds=60)
    assert jti1 != jti2 and first != second and tickets.JTI.fullmatch(jti1)


def test_a_host_ticket_reads_back_as_one():
    unsigned, _ = tickets.unsigned(tickets.HOST_KIND, tickets.host_claims(connection_activity_id="act-1",
                                                                          session_host_id=12),
                                   issued=1_900_000_000, lifetime_seconds=60)
    host = tickets.host_ticket(tickets.decode_claims(tickets.parse_envelope(unsigned + ".sig")))
    assert (host.connection_activity_id, host.session_host_id) == ("act-1", 12)
    assert tickets.read_connection_ticket(unsigned + ".sig") is None  # not a connection ticket


@pytest.mark.parametrize("claims", [
    dict(user_id=0), dict(resource=""), dict(resource="r" * 256), dict(application_group_id=True), dict(host_pool_id=-1),
])
def test_claims_no_ticket_may_carry_are_refused_when_writing(claims):
    with pytest.raises(ValueError):
        tickets.connection_claims(**{**dict(user_id=5, username="alice", application_group_id=7, resource="dag-a",
                                          host_pool_id=3, host_pool_name="pool-a"), **claims})


@pytest.mark.parametrize("ticket", ["", "wct1", "wct1.abc", "wxx1.abc.def", "wct1.a b.c", "wct1.é.c", "w" * 3000, None])
def test_what_is_not_shaped_like_a_ticket_is_refused(ticket):
    with pytest.raises(tickets.TicketFormatError):
        tickets.parse_envelope(ticket)


@pytest.mark.parametrize("payload", [
    "!!!", base64url.encode(b"[1]"), base64url.encode(b"{}"), base64url.encode(b'{"j": "short", "i": 1, "e": 2}'),
    base64url.encode(b'{"j": "abcdefghijklmnopq", "i": 1, "e": true}'), base64url.encode(b"[" * 100_000),
])
def test_a_payload_without_its_id_and_times_is_refused(payload):
    with pytest.raises(tickets.TicketFormatError):
        tickets.decode_claims(tickets.Envelope("wct1", payload, "sig"))


def test_a_connection_ticket_missing_a_claim_is_refused():
    claims = {**CONNECTION, "j": "abcdefghijklmnopq", "i": 1, "e": 2}
    del claims["g"]
    with pytest.raises(tickets.TicketFormatError):
        tickets.connection_ticket(claims)


def test_a_single_use_claim_reads_back_and_ordinary_tickets_carry_none():
    web = tickets.connection_claims(user_id=5, username="alice", application_group_id=7, resource="dag-a",
                                    host_pool_id=3, host_pool_name="pool-a", single_use=True)
    assert web["o"] == 1 and "o" not in CONNECTION
    read = tickets.read_connection_ticket(unsigned_connection_ticket(o=1) + "." + "s" * tickets.SIGNATURE_LENGTH)
    assert read.single_use
    assert not tickets.read_connection_ticket(unsigned_connection_ticket() + "." + "s" * 43).single_use


@pytest.mark.parametrize("once", [2, True, "1", None, -1])
def test_a_single_use_claim_of_another_value_is_refused(once):
    claims = {**CONNECTION, "j": "abcdefghijklmnopq", "i": 1, "e": 2, "o": once}
    with pytest.raises(tickets.TicketFormatError):
        tickets.connection_ticket(claims)
