"""Access that is taken away stops working at once: every admission re-checks that the ticket's user is
active and still entitled to what it names, and that nothing changed their access since it was issued.

Each case downloads a ticket the way the feed issues it, takes something away, and presents the ticket
to the gateway's admission (gateway/records.py), which refuses with a documented code and records it.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from broker.choices import ConnectionState
from broker.models import Connection, GatewayInstance, HostPool
from core.models import ApiToken, UserAccessChange
from core.tickets import issue_connection_ticket
from feed.models import Assignment, RemoteApp
from gateway import records
from tests.conftest import PASSWORD
from wire.errors import ErrorCode

pytestmark = pytest.mark.django_db
E = ErrorCode


@pytest.fixture
def gateway(db):
    return GatewayInstance.objects.create(name="gw-test", public_host="127.0.0.1", public_port=8443)


def ticket_for(user, group, alias: str = "desktop") -> str:
    """As the feed issues it (feed/views.py): the resource is ``<application group>/<alias>``."""
    return issue_connection_ticket(user=user, application_group_id=group.pk, resource=f"{group.name}/{alias}",
                                   host_pool_id=group.host_pool_id, host_pool_name=group.host_pool.name)


def admit(ticket: str):
    return records.admit(ticket, "192.0.2.20", "gw-test")


def recorded(refusal) -> Connection:
    connection = Connection.objects.get(activity_id=refusal.activity_id)
    assert connection.state == ConnectionState.FAILED and connection.error_code == refusal.code
    return connection


def issued_a_moment_ago(user) -> None:
    """Tickets carry their issue time in whole seconds: put the user's last access change a second before
    the next ticket, rather than sleeping a second."""
    UserAccessChange.objects.filter(user_id=user.pk).update(changed_at=timezone.now() - timedelta(seconds=2))


def test_an_entitled_user_is_admitted(member, desktop_group, gateway):
    assert isinstance(admit(ticket_for(member, desktop_group)), records.Admission)


def test_an_unassigned_user_is_refused(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    Assignment.objects.filter(application_group=desktop_group, user=member).delete()

    refusal = admit(ticket)

    assert refusal.code == E.ConnectionFailedUserNotAuthorized
    assert recorded(refusal).application_group == desktop_group


def test_a_user_removed_from_the_assigned_group_is_refused(member, desktop_group, gateway):
    Assignment.objects.filter(application_group=desktop_group, user=member).delete()
    staff = Group.objects.create(name="Staff")
    staff.user_set.add(member)
    Assignment.objects.create(application_group=desktop_group, group=staff)
    issued_a_moment_ago(member)
    ticket = ticket_for(member, desktop_group)
    assert isinstance(admit(ticket), records.Admission)

    member.groups.remove(staff)

    assert admit(ticket).code == E.ConnectionFailedUserNotAuthorized


def test_a_group_deleted_with_its_members_assignment_is_refused_as_unassigned(member, desktop_group, gateway):
    Assignment.objects.filter(application_group=desktop_group, user=member).delete()
    staff = Group.objects.create(name="Staff")
    staff.user_set.add(member)
    Assignment.objects.create(application_group=desktop_group, group=staff)
    issued_a_moment_ago(member)
    ticket = ticket_for(member, desktop_group)

    staff.delete()

    assert admit(ticket).code == E.ConnectionFailedUserNotAuthorized


def test_a_user_who_signed_out_is_refused_and_a_fresh_file_works(member, desktop_group, gateway):
    browser = Client()
    assert browser.login(username="member", password=PASSWORD)
    ticket = ticket_for(member, desktop_group)

    browser.post("/accounts/logout/")

    refusal = admit(ticket)
    assert refusal.code == E.ConnectionFailedTicketRevoked
    recorded(refusal)
    issued_a_moment_ago(member)
    assert isinstance(admit(ticket_for(member, desktop_group)), records.Admission)


def test_a_new_password_revokes_the_tickets_and_the_api_tokens(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    token, _ = ApiToken.issue(member, description="laptop")

    member.set_password("another-horse-battery-staple")
    member.save()

    assert admit(ticket).code == E.ConnectionFailedTicketRevoked
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_signing_in_again_changes_nothing(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    assert Client().login(username="member", password=PASSWORD)  # may upgrade the password's hash
    member.refresh_from_db()
    member.last_login = timezone.now()
    member.save()
    assert isinstance(admit(ticket), records.Admission)


def test_a_deactivated_user_is_refused_as_not_authorized(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    member.is_active = False
    member.save()

    assert admit(ticket).code == E.ConnectionFailedUserNotAuthorized
    assert UserAccessChange.objects.get(user_id=member.pk).reason == "deactivated"


def test_a_reactivated_user_still_needs_a_new_file(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    member.is_active = False
    member.save()
    member.is_active = True
    member.save()

    assert admit(ticket).code == E.ConnectionFailedTicketRevoked


def test_an_unassigned_then_reassigned_user_still_needs_a_new_file(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    Assignment.objects.filter(application_group=desktop_group, user=member).delete()
    Assignment.objects.create(application_group=desktop_group, user=member)

    assert admit(ticket).code == E.ConnectionFailedTicketRevoked


def test_a_deleted_application_group_is_refused_and_recorded_without_pointing_at_it(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    desktop_group.delete()

    refusal = admit(ticket)

    assert refusal.code == E.ConnectionFailedResourceNotFound
    connection = recorded(refusal)
    assert connection.application_group is None and connection.host_pool is not None


def test_a_deleted_host_pool_is_refused_and_recorded(member, desktop_group, pooled_pool, gateway):
    ticket = ticket_for(member, desktop_group)
    desktop_group.delete()
    HostPool.objects.filter(pk=pooled_pool.pk).delete()

    refusal = admit(ticket)

    assert refusal.code == E.ConnectionFailedResourceNotFound
    assert recorded(refusal).host_pool is None


def test_a_deleted_remoteapp_is_refused(member, remoteapp_group, gateway):
    Assignment.objects.create(application_group=remoteapp_group, user=member)
    app = RemoteApp.objects.create(application_group=remoteapp_group, name="calc", file_path=r"C:\calc.exe")
    issued_a_moment_ago(member)
    ticket = ticket_for(member, remoteapp_group, alias="calc")
    assert isinstance(admit(ticket), records.Admission)

    app.delete()

    assert admit(ticket).code == E.ConnectionFailedResourceNotFound


def test_a_group_moved_to_another_pool_is_refused(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    other = HostPool.objects.create(name="pool-z")
    type(desktop_group).objects.filter(pk=desktop_group.pk).update(host_pool=other)

    assert admit(ticket).code == E.ConnectionFailedResourceNotFound


def test_an_unpublished_group_is_refused(member, desktop_group, gateway):
    ticket = ticket_for(member, desktop_group)
    type(desktop_group).objects.filter(pk=desktop_group.pk).update(workspace=None)

    assert admit(ticket).code == E.ConnectionFailedUserNotAuthorized
