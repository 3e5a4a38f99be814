"""An estate with one of everything, and a browser signed in as the admin."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from broker.models import Connection, GatewayInstance, HostPool, SessionHost, SessionHostStatusChange, UserSession
from core import audit
from core.choices import AuditAction
from core.models import (
    ApiToken,
    AuditEvent,
    Certificate,
    DirectoryAccount,
    OidcAccount,
    OidcGroup,
    RevokedTicket,
    RoleAssignment,
    UserAccessChange,
)
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace

START = timezone.now().replace(microsecond=0) - timedelta(days=1)


def after(milliseconds: int):
    return START + timedelta(milliseconds=milliseconds)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The cast's users get real password hashes; the production hasher's cost would dominate these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_browser(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def estate(member, workspace, pooled_pool, personal_pool, desktop_group, remoteapp_group) -> dict[type, object]:
    """One saved object per model of wvdportal, broker and feed, keyed by its model."""
    finance = Group.objects.create(name="Finance")
    group_assignment = Assignment.objects.create(application_group=remoteapp_group, group=finance)
    notepad = RemoteApp.objects.create(
        application_group=remoteapp_group, name="notepad", friendly_name="Notepad", file_path=r"C:\Windows\notepad.exe"
    )
    host = SessionHost.objects.create(
        name="sh-01", host_pool=pooled_pool, agent_version="1.0.0", health_checks={"rdp_listener": "ok"}
    )
    host.set_status("available", "first heartbeat")
    SessionHost.objects.create(name="pd-01", host_pool=personal_pool, assigned_user=member)
    user_session = UserSession.objects.create(session_host=host, session_id=2, user=member, username="member")
    gateway = GatewayInstance.objects.create(
        name="gw-1", public_host="gw.example.net", public_port=8443, region="eu-west"
    )
    connection = Connection.objects.create(
        user=member, username="member", application_group=desktop_group, resource_name="Office desktop",
        host_pool=pooled_pool, session_host=host, gateway_instance=gateway, client_address="192.0.2.10",
        client_name="LAPTOP-7", state="ended", created_at=START,
        ticket_accepted_at=after(100), host_selected_at=after(250), host_notified_at=after(300),
        host_connected_at=after(900), relay_started_at=after(1500), ended_at=after(301_500),
        bytes_client_to_host=123_456, bytes_host_to_client=7_654_321, end_reason="client_closed",
    )
    Connection.objects.create(
        username="outsider", resource_name="Office apps", host_pool=pooled_pool, gateway_instance=gateway,
        state="failed", end_reason="error", error_code="ConnectionFailedNoHealthyRdshAvailable",
        error_message="No session host is available.", ended_at=timezone.now(),
    )
    certificate = Certificate.objects.create(
        serial_number="5f3a9c", subject="CN=sh-01", common_name="sh-01", purpose="host-agent",
        fingerprint_sha256="ab" * 32, not_before=START, not_after=START + timedelta(days=90),
        pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    api_token, _ = ApiToken.issue(member, description="laptop", lifetime=timedelta(hours=1))
    revoked_ticket = RevokedTicket.objects.create(jti="3f9d2c1b", expires_at=timezone.now() + timedelta(hours=8))
    access_change = UserAccessChange.objects.create(user_id=member.pk, changed_at=START, reason="signed out")
    directory_account = DirectoryAccount.objects.create(user=member, dn="uid=member,ou=people,dc=example,dc=org")
    role_assignment = RoleAssignment.objects.create(role="Host Pool Reader", user=member, scope_type="hostpool",
                                                    scope_id=pooled_pool.pk)
    audit_event = audit.record(AuditAction.DRAIN, host, changes={"allow_new_sessions": [True, False]})
    oidc_account = OidcAccount.objects.create(user=member, issuer="https://id.example.org/o", subject="subject-7")
    oidc_group = OidcGroup.objects.create(group=Group.objects.create(name="Sales"))
    return {
        Workspace: workspace,
        HostPool: pooled_pool,
        ApplicationGroup: remoteapp_group,
        Assignment: group_assignment,
        Desktop: desktop_group.desktop,
        RemoteApp: notepad,
        SessionHost: host,
        SessionHostStatusChange: host.status_changes.get(),
        UserSession: user_session,
        GatewayInstance: gateway,
        Connection: connection,
        Certificate: certificate,
        ApiToken: api_token,
        RevokedTicket: revoked_ticket,
        UserAccessChange: access_change,
        DirectoryAccount: directory_account,
        RoleAssignment: role_assignment,
        AuditEvent: audit_event,
        OidcAccount: oidc_account,
        OidcGroup: oidc_group,
    }
