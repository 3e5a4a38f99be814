"""The browser client's web ticket: short-lived, single use, and only for the browser transport.

Each case issues tickets as the page and the feed do (core/tickets.py) and presents them to the gateway's
admission (gateway/records.admit) with the transport a listener would name; refusals carry documented
codes and are recorded.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import close_old_connections

from broker.choices import ConnectionState, ConnectionTransport
from broker.models import Connection
from core.models import RevokedTicket
from core.tickets import issue_web_ticket, verify_connection_ticket
from gateway import records
from tests.gateway.test_admission import gateway, ticket_for  # noqa: F401 - a fixture, the feed's ticket
from tests.placement.test_concurrency import database_file_on_sqlite  # noqa: F401 - a fixture
from wire.errors import ErrorCode
from wire.tickets import read_connection_ticket

pytestmark = pytest.mark.django_db
E = ErrorCode
BROWSER = ConnectionTransport.RDCLEANPATH


def web_ticket_for(user, group, alias: str = "desktop") -> str:
    return issue_web_ticket(user=user, application_group_id=group.pk, resource=f"{group.name}/{alias}",
                            host_pool_id=group.host_pool_id, host_pool_name=group.host_pool.name)


def admit(ticket: str, transport: str = BROWSER, **kwargs):
    return records.admit(ticket, "192.0.2.30", "gw-test", transport=transport, **kwargs)


def recorded(refusal) -> Connection:
    connection = Connection.objects.get(activity_id=refusal.activity_id)
    assert connection.state == ConnectionState.FAILED and connection.error_code == refusal.code
    return connection


def test_a_web_ticket_is_single_use_short_lived_and_for_one_resource(member, desktop_group, settings):
    ticket = verify_connection_ticket(web_ticket_for(member, desktop_group))

    assert ticket.single_use
    assert ticket.expires_at - ticket.issued_at == settings.WEB_TICKET_LIFETIME == timedelta(seconds=60)
    assert (ticket.user_id, ticket.application_group_id, ticket.resource) == (
        member.pk, desktop_group.pk, f"{desktop_group.name}/desktop")


def test_an_ordinary_ticket_is_not_single_use(member, desktop_group):
    assert not read_connection_ticket(ticket_for(member, desktop_group)).single_use


def test_a_web_ticket_is_admitted_once_on_the_browser_transport(member, desktop_group, gateway):
    admission = admit(web_ticket_for(member, desktop_group))

    assert isinstance(admission, records.Admission)
    assert Connection.objects.get(pk=admission.connection_pk).transport == BROWSER
    assert RevokedTicket.objects.get(jti=admission.ticket.jti).used


def test_it_refuses_a_reused_web_ticket_and_records_it(member, desktop_group, gateway):
    ticket = web_ticket_for(member, desktop_group)
    assert isinstance(admit(ticket), records.Admission)

    refusal = admit(ticket)

    assert refusal.code == E.ConnectionFailedTicketAlreadyUsed
    record = recorded(refusal)
    assert record.transport == BROWSER
    # Our signature holds, so the record names who and what (the user's own page finds it by them).
    assert (record.user, record.username, record.application_group) == (member, member.username, desktop_group)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("database_file_on_sqlite")
def test_it_refuses_a_web_ticket_used_twice_at_once(member, desktop_group, gateway):
    """Two admissions racing for one ticket, each in its own thread and database connection: exactly one
    wins (the unique jti decides)."""
    ticket = web_ticket_for(member, desktop_group)
    outcomes: list = []
    start = threading.Barrier(2)

    def present() -> None:
        try:
            start.wait()
            outcomes.append(admit(ticket))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=present) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    admitted = [o for o in outcomes if isinstance(o, records.Admission)]
    assert len(admitted) == 1
    assert [o.code for o in outcomes if isinstance(o, records.Refusal)] == [E.ConnectionFailedTicketAlreadyUsed]


def test_it_refuses_an_expired_web_ticket_and_records_it(member, desktop_group, gateway, settings):
    settings.WEB_TICKET_LIFETIME = timedelta(seconds=1)
    ticket = web_ticket_for(member, desktop_group)
    # Tickets carry whole seconds: wait (at most a second) until this one's expiry has passed.
    time.sleep(max(0.0, read_connection_ticket(ticket).expires_at.timestamp() - time.time()) + 0.05)

    refusal = admit(ticket)

    assert refusal.code == E.ConnectionFailedTicketExpired
    record = recorded(refusal)
    assert record.transport == BROWSER
    assert (record.user, record.username, record.application_group) == (member, member.username, desktop_group)


@pytest.mark.parametrize("transport", [ConnectionTransport.WEBSOCKET, ConnectionTransport.RDG_WEBSOCKET,
                                       ConnectionTransport.RDG_HTTP, ""])
def test_it_refuses_a_web_ticket_on_any_other_transport(member, desktop_group, gateway, transport):
    ticket = web_ticket_for(member, desktop_group)

    refusal = admit(ticket, transport)

    assert refusal.code == E.ConnectionFailedTicketWrongClient
    assert recorded(refusal).transport == transport
    # Not consumed: the page's own client can still use it.
    assert isinstance(admit(ticket), records.Admission)


def test_it_refuses_an_rdp_file_ticket_on_the_browser_transport(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)

    refusal = admit(ticket)

    assert refusal.code == E.ConnectionFailedTicketWrongClient
    assert recorded(refusal).transport == BROWSER
    assert isinstance(admit(ticket, ConnectionTransport.WEBSOCKET), records.Admission)


def test_a_refusal_decided_by_the_transport_is_recorded_without_consuming_the_ticket(member, desktop_group, gateway):
    ticket = web_ticket_for(member, desktop_group)
    origin = records.Denial(E.ConnectionFailedOriginNotAllowed, "Origin https://evil.example is not the portal's.")

    refusal = admit(ticket, refuse_with=origin)

    assert refusal.code == E.ConnectionFailedOriginNotAllowed
    assert recorded(refusal).user == member
    assert not RevokedTicket.objects.filter(used=True).exists()
    assert isinstance(admit(ticket), records.Admission)
