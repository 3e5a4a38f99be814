"""Objects the API tests share, on top of the fixed cast in tests/conftest.py."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from broker.models import Connection, GatewayInstance, SessionHost, UserSession
from core.models import Certificate
from feed.models import RemoteApp


@pytest.fixture
def grant():
    """grant(user, "broker.view_hostpool", ...): give a plain user model permissions."""

    def _grant(user, *perms: str) -> None:
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))

    return _grant


@pytest.fixture
def session_host(pooled_pool):
    return SessionHost.objects.create(host_pool=pooled_pool, name="host-1.example.net")


@pytest.fixture
def gateway_instance(db):
    return GatewayInstance.objects.create(name="gw-1", public_host="gw1.example.net", public_port=8443, region="eu")


@pytest.fixture
def user_session(session_host, member):
    return UserSession.objects.create(session_host=session_host, session_id=2, user=member, username=member.username)


@pytest.fixture
def connection(session_host, member, desktop_group, gateway_instance):
    return Connection.objects.create(
        user=member, username=member.username, application_group=desktop_group, resource_name="Office desktop",
        host_pool=session_host.host_pool, session_host=session_host, gateway_instance=gateway_instance,
        state="ended", end_reason="client_closed",
    )


@pytest.fixture
def certificate(db):
    now = timezone.now()
    return Certificate.objects.create(
        serial_number="0a1b2c", subject="CN=host-1.example.net", common_name="host-1.example.net",
        purpose="host-agent", fingerprint_sha256="ab" * 32, not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=30), pem="-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )


@pytest.fixture
def assignment(desktop_group, member):
    return desktop_group.assignments.get(user=member)


@pytest.fixture
def desktop(desktop_group):
    return desktop_group.desktop


@pytest.fixture
def remote_app(remoteapp_group):
    return RemoteApp.objects.create(
        application_group=remoteapp_group, name="notepad", friendly_name="Notepad",
        file_path=r"C:\Windows\notepad.exe",
    )
