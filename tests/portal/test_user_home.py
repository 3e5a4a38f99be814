"""The user's page at /: their own recent connections, with a failure explained in plain words."""
from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from lxml import html

from broker.models import Connection
from wire.errors import describe


def recent(response) -> list[str]:
    return [" ".join(li.text_content().split()) for li in html.fromstring(response.content).xpath(
        "//section[@class='recent']//li")]


def test_a_user_sees_their_recent_connections_with_failures_explained(plain, estate):
    Connection.objects.filter(pk=estate["failed"][0].pk).update(
        error_message="No session host is available... (Host pool pool-a has 4 hosts: internal detail)")

    items = recent(plain.get("/"))

    assert len(items) == 3  # the member's own: two failed, one worked (the old one has no user any more)
    assert items[0].startswith("Office desktop")  # the resource's title, not its key
    assert describe("ConnectionFailedNoHealthyRdshAvailable").message in items[0]
    assert f"quote activity {estate['failed'][0].activity_id}" in items[0]
    assert "internal detail" not in plain.get("/").content.decode()  # the admin's detail stays in the portal
    assert "Connected for 59 minutes" in items[1]
    assert describe("InternalError").message not in " ".join(items)


def test_other_users_connections_are_not_shown(plain, estate):
    text = plain.get("/").content.decode()

    assert describe("ConnectionFailedUserNotAuthorized").message not in text


def test_a_user_without_connections_sees_no_list(client, outsider, db):
    client.force_login(outsider)

    assert recent(client.get("/")) == []


def test_portal_users_get_a_link_to_the_portal_and_users_do_not(staff, plain, estate):
    assert 'href="/portal/"' in staff.get("/").content.decode()
    assert 'href="/portal/"' not in plain.get("/").content.decode()


def test_the_page_costs_a_fixed_number_of_queries(plain, estate, member):
    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            plain.get("/")
        return len(captured)

    few = count()
    Connection.objects.bulk_create([Connection(user=member, username="member", state="failed",
                                               error_code="InternalError") for _ in range(20)])

    # session, user, desktops, RemoteApps, connections, their roles (whether to link to the portal)
    assert (few, count()) == (6, 6)
