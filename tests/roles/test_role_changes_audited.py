"""Giving, changing and taking away a role through the API lands in the audit log (role_grant, role_change,
role_revoke) with who did it; a refused attempt by someone who may not give roles leaves no event."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from broker.models import HostPool
from core.models import ApiToken, AuditEvent, RoleAssignment

pytestmark = pytest.mark.django_db


def api_for(user) -> APIClient:
    client = APIClient()
    _, key = ApiToken.issue(user, description="roles")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_role_changes_through_the_api_are_audited(django_user_model):
    owner = django_user_model.objects.create_superuser("owner", "", "owner-password-1")
    helpdesk = django_user_model.objects.create_user("helpdesk")
    pool = HostPool.objects.create(name="audited-pool")
    api = api_for(owner)

    given = api.post("/api/v1/role-assignments/", {"role": "User Session Operator", "user": helpdesk.pk,
                                                  "scope_type": "hostpool", "scope_id": pool.pk}, format="json")
    assert given.status_code == 201, given.content
    pk = given.json()["id"]
    changed = api.patch(f"/api/v1/role-assignments/{pk}/", {"role": "User Session Reader"}, format="json")
    assert changed.status_code == 200, changed.content
    assert api.delete(f"/api/v1/role-assignments/{pk}/").status_code == 204

    events = list(AuditEvent.objects.filter(object_id=str(pk)).order_by("pk").values_list("action", "actor_name"))
    assert events == [("role_grant", "owner"), ("role_change", "owner"), ("role_revoke", "owner")]


def test_a_refused_role_grant_leaves_no_event(django_user_model):
    helpdesk = django_user_model.objects.create_user("helpdesk", is_staff=True)
    pool = HostPool.objects.create(name="audited-pool")
    before = AuditEvent.objects.count()

    refused = api_for(helpdesk).post("/api/v1/role-assignments/", {
        "role": "Desktop Virtualization Contributor", "user": helpdesk.pk, "scope_type": "all"}, format="json")

    assert refused.status_code == 403
    assert not RoleAssignment.objects.exists() and not HostPool.objects.exclude(pk=pool.pk).exists()
    assert AuditEvent.objects.count() == before
