"""The portal's role page: superusers list, give and take away role assignments; nobody else may."""
from __future__ import annotations

from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from core.models import RoleAssignment


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_superuser_gives_a_role_to_a_group_and_its_member_gets_the_portal(admin_user, estate, django_user_model):
    helpdesk = Group.objects.create(name="helpdesk")
    agent = django_user_model.objects.create_user("agent")
    agent.groups.add(helpdesk)
    admin = browser(admin_user)
    response = admin.post(reverse("portal:roles"), {"role": "User Session Operator", "user": "", "group": "helpdesk",
                                                    "scope_type": "hostpool", "scope_id": estate["p1"].pk})
    assert response.status_code == 302
    given = RoleAssignment.objects.get()
    assert (given.role, given.group, given.scope_type, given.scope_id) == (
        "User Session Operator", helpdesk, "hostpool", estate["p1"].pk)
    page = admin.get(reverse("portal:roles")).content.decode()
    assert "User Session Operator" in page and "helpdesk" in page and "p1" in page

    from core.models import AuditEvent  # noqa: PLC0415

    assert AuditEvent.objects.filter(action="role_grant", actor_name="admin", object_id=str(given.pk)).exists()
    operator = browser(agent)
    assert operator.get(reverse("portal:sessions")).status_code == 200
    assert admin.post(reverse("portal:role-remove", args=[given.pk])).status_code == 302
    assert not RoleAssignment.objects.exists()
    assert AuditEvent.objects.filter(action="role_revoke", object_id=str(given.pk)).exists()
    assert operator.get(reverse("portal:sessions")).status_code == 403


def test_a_role_that_makes_no_sense_is_refused_with_the_reason(admin_user, estate):
    admin = browser(admin_user)
    for form, reason in [
        ({"role": "Host Pool Reader", "user": "admin", "group": "", "scope_type": "workspace",
          "scope_id": estate["ws1"].pk}, "can be given at the scopes"),
        ({"role": "Host Pool Reader", "user": "admin", "group": "", "scope_type": "hostpool", "scope_id": 99999},
         "There is no hostpool"),
        ({"role": "Host Pool Reader", "user": "", "group": "", "scope_type": "all", "scope_id": ""},
         "exactly one of them"),
        ({"role": "Host Pool Reader", "user": "nobody-by-that-name", "group": "", "scope_type": "all",
          "scope_id": ""}, "Select a valid choice"),
    ]:
        response = admin.post(reverse("portal:roles"), form)
        assert response.status_code == 400
        assert reason in response.content.decode(), reason
    assert not RoleAssignment.objects.exists()


def test_only_superusers_manage_roles_in_the_portal(estate, django_user_model, give_role):
    contributor = django_user_model.objects.create_user("contributor", is_staff=True)
    give_role(contributor, "Desktop Virtualization Contributor")
    other = give_role(django_user_model.objects.create_user("other"), "Workspace Reader")
    client = browser(contributor)
    assert client.get(reverse("portal:roles")).status_code == 403
    assert client.post(reverse("portal:roles"), {"role": "Desktop Virtualization Contributor", "user": "contributor",
                                                 "group": "", "scope_type": "all", "scope_id": ""}).status_code == 403
    assert client.post(reverse("portal:role-remove", args=[other.pk])).status_code == 403
    assert RoleAssignment.objects.count() == 2
    assert "portal/roles/" not in client.get(reverse("portal:dashboard")).content.decode()


def test_the_portal_link_sidebar_and_live_updates_follow_the_roles_not_staff(estate, django_user_model, give_role):
    reader = django_user_model.objects.create_user("reader")
    give_role(reader, "Host Pool Reader", estate["p1"])
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    with_role, without = browser(reader), browser(staff)
    assert "Admin portal" in with_role.get(reverse("feed:home")).content.decode()
    assert "Admin portal" not in without.get(reverse("feed:home")).content.decode()
    dashboard = with_role.get(reverse("portal:dashboard")).content.decode()
    assert 'data-live-url="/ws/portal/"' in dashboard and 'aria-label="Portal"' in dashboard
