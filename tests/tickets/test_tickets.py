"""Connection and host tickets: what the feed signs and the gateway checks."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from core import tasks
from core.models import RevokedTicket
from core.tickets import (
    MAX_TICKET_LENGTH,
    ConnectionTicket,
    HostTicket,
    TicketRefused,
    issue_connection_ticket,
    issue_host_ticket,
    revoke_ticket,
    verify_connection_ticket,
    verify_host_ticket,
)

BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def ticket(member) -> str:
    return issue_connection_ticket(user=member, application_group_id=7, resource="sh-pool-a",
                                   host_pool_id=3, host_pool_name="pool-a")


@pytest.fixture
def host_ticket(db) -> str:
    return issue_host_ticket(connection_activity_id="6f1c5a1e-8d4b-4a53-9d1e-0c4f1f0e2a11", session_host_id=12)


def _refused(verify, value, **kwargs) -> TicketRefused:
    with pytest.raises(TicketRefused) as caught:
        verify(value, **kwargs)
    return caught.value


def _flip(ticket: str, index: int) -> str:
    """The ticket with one base64url character replaced by another base64url character."""
    replacement = "A" if ticket[index] != "A" else "B"
    return ticket[:index] + replacement + ticket[index + 1:]


def test_a_connection_ticket_round_trips(member, ticket):
    claims = verify_connection_ticket(ticket)

    assert isinstance(claims, ConnectionTicket)
    assert (claims.user_id, claims.username) == (member.pk, "member")
    assert (claims.application_group_id, claims.resource) == (7, "sh-pool-a")
    assert (claims.host_pool_id, claims.host_pool_name) == (3, "pool-a")
    assert claims.expires_at - claims.issued_at == timedelta(hours=8)
    assert claims.issued_at <= datetime.now(UTC) < claims.expires_at


def test_a_ticket_is_compact_url_and_header_safe_ascii(ticket):
    assert re.fullmatch(r"[A-Za-z0-9._-]+", ticket)
    assert len(ticket) < 1000  # FreeRDP accepts up to 32766 characters


def test_every_ticket_has_its_own_id(member):
    issue = lambda: issue_connection_ticket(user=member, application_group_id=7, resource="r",  # noqa: E731
                                            host_pool_id=3, host_pool_name="pool-a")
    assert verify_connection_ticket(issue()).jti != verify_connection_ticket(issue()).jti


def test_the_lifetime_comes_from_settings_unless_given(member, settings):
    settings.CONNECTION_TICKET_LIFETIME = timedelta(minutes=5)
    default = verify_connection_ticket(issue_connection_ticket(
        user=member, application_group_id=7, resource="r", host_pool_id=3, host_pool_name="pool-a"))
    explicit = verify_connection_ticket(issue_connection_ticket(
        user=member, application_group_id=7, resource="r", host_pool_id=3, host_pool_name="pool-a",
        lifetime=timedelta(minutes=1)))
    assert default.expires_at - default.issued_at == timedelta(minutes=5)
    assert explicit.expires_at - explicit.issued_at == timedelta(minutes=1)


def test_it_refuses_an_expired_ticket_without_the_database(ticket, django_assert_num_queries):
    expires_at = verify_connection_ticket(ticket).expires_at
    with django_assert_num_queries(0):
        refusal = _refused(verify_connection_ticket, ticket, now=expires_at)
    assert refusal.reason_code == "expired"


@pytest.mark.parametrize("where", ["payload", "signature"])
def test_it_refuses_a_ticket_with_one_character_changed(ticket, where, django_assert_num_queries):
    kind, payload, signature = ticket.split(".")
    index = len(kind) + 1 + len(payload) // 2 if where == "payload" else len(ticket) - 5
    with django_assert_num_queries(0):
        refusal = _refused(verify_connection_ticket, _flip(ticket, index))
    assert refusal.reason_code == "bad_signature"


def test_it_refuses_a_ticket_signed_with_another_secret_key(ticket, settings):
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert _refused(verify_connection_ticket, ticket).reason_code == "bad_signature"


def test_tickets_signed_before_a_key_rotation_still_verify(ticket, settings):
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-new-secret-key-" + "x" * 40
    assert verify_connection_ticket(ticket).resource == "sh-pool-a"


def test_it_refuses_a_revoked_ticket_with_one_query(ticket, django_assert_num_queries):
    claims = verify_connection_ticket(ticket)
    revoke_ticket(claims.jti, claims.expires_at)
    revoke_ticket(claims.jti, claims.expires_at)  # twice is harmless

    with django_assert_num_queries(1):
        refusal = _refused(verify_connection_ticket, ticket)
    assert refusal.reason_code == "revoked"
    assert RevokedTicket.objects.filter(jti=claims.jti).count() == 1


def test_a_valid_ticket_costs_one_query(ticket, django_assert_num_queries):
    with django_assert_num_queries(1):
        verify_connection_ticket(ticket)


def test_a_valid_host_ticket_costs_one_query(host_ticket, django_assert_num_queries):
    with django_assert_num_queries(1):
        verify_host_ticket(host_ticket)


MALFORMED = {
    "empty": "",
    "one word": "hello",
    "no signature": "wct1.eyJ9",
    "empty parts": "wct1..",
    "unknown kind": "wxx1.eyJqIjoiYSJ9." + "A" * 43,
    "short signature": "wct1.eyJqIjoiYSJ9.AAAA",
    "padding and spaces": "wct1.eyJ9= ." + "A" * 43,
    "trailing newline": "wct1.eyJ9." + "A" * 43 + "\n",
    "non-ascii": "wct1.éé." + "A" * 43,
    "a megabyte": "wct1." + "A" * (1024 * 1024) + "." + "A" * 43,
    "ten megabytes of dots": "." * (10 * 1024 * 1024),
    "just over the limit": "wct1." + "A" * MAX_TICKET_LENGTH,
    "not a string": None,
    "bytes": b"wct1.eyJ9.AAAA",
}


@pytest.mark.parametrize("case", MALFORMED)
def test_it_refuses_malformed_input_of_any_length_without_the_database(db, case, django_assert_num_queries):
    with django_assert_num_queries(0):
        refusal = _refused(verify_connection_ticket, MALFORMED[case])
    assert refusal.reason_code == "malformed"
    assert refusal.message


def test_a_host_ticket_round_trips(host_ticket):
    claims = verify_host_ticket(host_ticket)
    assert isinstance(claims, HostTicket)
    assert claims.connection_activity_id == "6f1c5a1e-8d4b-4a53-9d1e-0c4f1f0e2a11"
    assert claims.session_host_id == 12
    assert claims.expires_at - claims.issued_at == timedelta(seconds=60)


def test_a_host_ticket_expires_after_a_minute(host_ticket):
    claims = verify_host_ticket(host_ticket)
    assert _refused(verify_host_ticket, host_ticket, now=claims.expires_at).reason_code == "expired"


def test_a_revoked_host_ticket_is_refused(host_ticket):
    claims = verify_host_ticket(host_ticket)
    revoke_ticket(claims.jti, claims.expires_at)
    assert _refused(verify_host_ticket, host_ticket).reason_code == "revoked"


def test_a_connection_ticket_is_not_accepted_as_a_host_ticket(ticket):
    assert _refused(verify_host_ticket, ticket).reason_code == "wrong_kind"


def test_a_host_ticket_is_not_accepted_as_a_connection_ticket(host_ticket):
    assert _refused(verify_connection_ticket, host_ticket).reason_code == "wrong_kind"


@pytest.mark.parametrize(("source", "target"), [("wct1", "wht1"), ("wht1", "wct1")])
def test_relabelling_the_kind_does_not_pass_the_other_check(ticket, host_ticket, source, target):
    original = ticket if source == "wct1" else host_ticket
    verify = verify_host_ticket if target == "wht1" else verify_connection_ticket
    assert _refused(verify, target + original[4:]).reason_code == "bad_signature"


def test_it_refuses_to_issue_for_an_unsaved_user_or_a_bad_lifetime(django_user_model, member):
    with pytest.raises(ValueError, match="saved user"):
        issue_connection_ticket(user=django_user_model(username="ghost"), application_group_id=1, resource="r",
                                host_pool_id=1, host_pool_name="p")
    with pytest.raises(ValueError, match="positive"):
        issue_connection_ticket(user=member, application_group_id=1, resource="r", host_pool_id=1,
                                host_pool_name="p", lifetime=timedelta(0))
    with pytest.raises(ValueError, match="resource"):
        issue_connection_ticket(user=member, application_group_id=1, resource="r" * 300, host_pool_id=1,
                                host_pool_name="p")


def test_revoking_needs_a_ticket_id(db):
    with pytest.raises(ValueError):
        revoke_ticket("x", datetime.now(UTC))


def test_the_purge_task_drops_revocations_of_tickets_that_expired_anyway(db):
    now = datetime.now(UTC)
    revoke_ticket("expired-ticket-id-0001", now - timedelta(minutes=1))
    revoke_ticket("current-ticket-id-0001", now + timedelta(hours=1))

    assert tasks.purge_expired_ticket_revocations.apply().get() == 1
    assert list(RevokedTicket.objects.values_list("jti", flat=True)) == ["current-ticket-id-0001"]
