"""The audit tests' helpers: the events recorded since a test began, and clients that say where they are."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.models import ApiToken, AuditEvent

USER_AGENT = "audit-test/1.0 (specification)"
ADDRESS = "192.0.2.44"


def events(**filters) -> list[AuditEvent]:
    """The events matching ``filters``, oldest first; the browsers' own sign-ins (force_login) only when
    ``action`` asks for them."""
    found = AuditEvent.objects.filter(**filters)
    if "action" not in filters:
        found = found.exclude(action="sign_in")
    return list(found.order_by("at", "id"))


def only_event(**filters) -> AuditEvent:
    found = events(**filters)
    assert len(found) == 1, [(e.action, e.object_type, e.object_repr) for e in AuditEvent.objects.all()]
    return found[0]


@pytest.fixture
def token_api(admin_user) -> tuple[APIClient, ApiToken]:
    """An API client of the admin, with a named token, from a known address and user agent."""
    token, key = ApiToken.issue(admin_user, description="deploy script")
    client = APIClient(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=USER_AGENT)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client, token


@pytest.fixture
def admin_browser(admin_user) -> Client:
    client = Client(REMOTE_ADDR=ADDRESS, HTTP_USER_AGENT=USER_AGENT)
    client.force_login(admin_user)
    return client
