"""Session hosts over the API: the fields agents report are read-only; drain mode and marking a host for
replacement have their own actions."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from broker.models import SessionHost, UserSession
from core.models import ApiToken
from tests.hostagent.conftest import eager_tasks, live_host, our_ca, root_files  # noqa: F401  (a registered host)


def test_create_a_session_host(admin_api, pooled_pool):
    response = admin_api.post("/api/v1/sessionhosts/", {"name": "host-2.example.net", "host_pool": pooled_pool.pk})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["allow_new_sessions"] is True
    assert body["host_pool_name"] == "pool-a"
    assert body["assigned_user"] is None and body["assigned_username"] is None


def test_a_host_name_is_unique_whatever_its_case(admin_api, session_host, personal_pool):
    response = admin_api.post("/api/v1/sessionhosts/", {"name": "HOST-1.example.net", "host_pool": personal_pool.pk})
    assert response.status_code == 400
    assert response.json() == {"name": ["A session host with this name already exists."]}


def test_the_fields_the_agent_reports_cannot_be_set(admin_api, session_host):
    response = admin_api.patch(f"/api/v1/sessionhosts/{session_host.pk}/", {
        "status": "available", "agent_version": "9.9", "health_checks": {"rdp": "ok"}, "allow_new_sessions": False,
    })
    assert response.status_code == 200
    session_host.refresh_from_db()
    assert (session_host.status, session_host.agent_version, session_host.health_checks) == ("unavailable", "", {})
    assert session_host.allow_new_sessions is True


def test_only_hosts_of_personal_pools_have_an_assigned_user(admin_api, session_host, member):
    response = admin_api.patch(f"/api/v1/sessionhosts/{session_host.pk}/", {"assigned_user": member.pk})
    assert response.status_code == 400
    assert response.json() == {"assigned_user": ["Only hosts in a personal host pool have an assigned user."]}


def test_a_user_has_at_most_one_personal_host_per_pool(admin_api, personal_pool, member):
    SessionHost.objects.create(host_pool=personal_pool, name="pc-1", assigned_user=member)
    response = admin_api.post(
        "/api/v1/sessionhosts/", {"name": "pc-2", "host_pool": personal_pool.pk, "assigned_user": member.pk}
    )
    assert response.status_code == 400
    assert response.json() == {"assigned_user": ["This user already has a personal host in this pool."]}


def test_assign_a_personal_host_directly(admin_api, personal_pool, member):
    host = SessionHost.objects.create(host_pool=personal_pool, name="pc-1")
    response = admin_api.patch(f"/api/v1/sessionhosts/{host.pk}/", {"assigned_user": member.pk})
    assert response.status_code == 200, response.json()
    assert response.json()["assigned_username"] == "member"


def test_deleting_a_host_deletes_its_user_sessions(admin_api, user_session):
    host = user_session.session_host
    assert admin_api.delete(f"/api/v1/sessionhosts/{host.pk}/").status_code == 204
    assert not UserSession.objects.exists()


def test_hosts_filter_by_pool_status_and_drain_mode(admin_api, session_host, personal_pool):
    SessionHost.objects.create(host_pool=personal_pool, name="pc-1", status="available", allow_new_sessions=False)

    def names(query: str) -> list[str]:
        response = admin_api.get(f"/api/v1/sessionhosts/?{query}")
        assert response.status_code == 200, response.json()
        return [h["name"] for h in response.json()["results"]]

    assert names(f"host_pool={personal_pool.pk}") == ["pc-1"]
    assert names("status=available&status=shutdown") == ["pc-1"]
    assert names("allow_new_sessions=false") == ["pc-1"]
    assert names("search=pool-a") == ["host-1.example.net"]
    assert admin_api.get("/api/v1/sessionhosts/?status=broken").status_code == 400


# --- drain mode ----------------------------------------------------------------------------------

def test_drain_mode_on_and_off(admin_api, session_host):
    url = f"/api/v1/sessionhosts/{session_host.pk}/drain/"
    drained = admin_api.post(url, {"allow_new_sessions": False})
    assert drained.status_code == 200
    assert drained.json()["allow_new_sessions"] is False
    assert drained.json()["id"] == session_host.pk
    session_host.refresh_from_db()
    assert session_host.allow_new_sessions is False

    undrained = admin_api.post(url, {"allow_new_sessions": True})
    assert undrained.json()["allow_new_sessions"] is True
    session_host.refresh_from_db()
    assert session_host.allow_new_sessions is True


@pytest.mark.parametrize("value", ["false", "no", 0, 1, None, "", [], {}])
def test_drain_accepts_only_a_json_boolean(admin_api, session_host, value):
    response = admin_api.post(f"/api/v1/sessionhosts/{session_host.pk}/drain/", {"allow_new_sessions": value})
    assert response.status_code == 400
    assert "allow_new_sessions" in response.json()
    session_host.refresh_from_db()
    assert session_host.allow_new_sessions is True


def test_drain_needs_the_field(admin_api, session_host):
    response = admin_api.post(f"/api/v1/sessionhosts/{session_host.pk}/drain/", {})
    assert response.status_code == 400
    assert response.json() == {"allow_new_sessions": ["This field is required."]}


def test_drain_refuses_form_data(admin_api, session_host):
    response = admin_api.post(
        f"/api/v1/sessionhosts/{session_host.pk}/drain/", {"allow_new_sessions": "false"}, format="multipart"
    )
    assert response.status_code == 415


def test_drain_of_an_unknown_host_is_404(admin_api):
    assert admin_api.post("/api/v1/sessionhosts/999999/drain/", {"allow_new_sessions": False}).status_code == 404


# --- replacement: letting a registration take a live host's name -----------------------------------------

def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user)[1]}")
    return client


def replacement_url(host) -> str:
    return f"/api/v1/sessionhosts/{host.pk}/replacement/"


def test_marking_for_replacement_lets_the_next_registration_take_the_host_over(admin_api, admin_user, live_host):
    live_host.assert_not_replaced(live_host.register_again())

    response = admin_api.post(replacement_url(live_host.host), {"marked_for_replacement": True})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["id"], body["marked_for_replacement_by"], body["marked_for_replacement_by_username"]) == (
        live_host.host.pk, admin_user.pk, "admin")
    assert body["marked_for_replacement_at"] is not None
    live_host.assert_replaced_by(live_host.register_again())
    after = admin_api.get(f"/api/v1/sessionhosts/{live_host.host.pk}/").json()
    assert (after["marked_for_replacement_at"], after["marked_for_replacement_by"]) == (None, None)
    assert after["certificate"] != live_host.certificate.pk


def test_cancelling_the_mark_refuses_registrations_again(admin_api, live_host):
    admin_api.post(replacement_url(live_host.host), {"marked_for_replacement": True})
    response = admin_api.post(replacement_url(live_host.host), {"marked_for_replacement": False})
    assert response.status_code == 200
    assert response.json()["marked_for_replacement_at"] is None
    live_host.assert_not_replaced(live_host.register_again())


def test_marking_twice_keeps_the_first_mark(admin_api, session_host, django_user_model, give_role):
    first = admin_api.post(replacement_url(session_host), {"marked_for_replacement": True}).json()
    other = django_user_model.objects.create_user("other-admin")
    give_role(other, "Session Host Contributor", session_host.host_pool)
    again = api_for(other).post(replacement_url(session_host), {"marked_for_replacement": True}).json()
    assert again["marked_for_replacement_at"] == first["marked_for_replacement_at"]
    assert again["marked_for_replacement_by_username"] == "admin"


def test_the_mark_cannot_be_set_by_editing_the_host(admin_api, session_host):
    response = admin_api.patch(f"/api/v1/sessionhosts/{session_host.pk}/", {
        "marked_for_replacement_at": "2030-01-01T00:00:00Z", "marked_for_replacement_by": 1})
    assert response.status_code == 200
    session_host.refresh_from_db()
    assert (session_host.marked_for_replacement_at, session_host.marked_for_replacement_by) == (None, None)


@pytest.mark.parametrize("body", [{}, {"marked_for_replacement": "true"}, {"marked_for_replacement": 1}])
def test_replacement_needs_a_json_boolean(admin_api, session_host, body):
    assert admin_api.post(replacement_url(session_host), body).status_code == 400
    session_host.refresh_from_db()
    assert session_host.marked_for_replacement_at is None


def test_replacement_of_an_unknown_host_is_404(admin_api):
    assert admin_api.post("/api/v1/sessionhosts/999999/replacement/", {"marked_for_replacement": True}
                          ).status_code == 404


def test_a_plain_user_is_refused_the_replacement_action(member_api, live_host):
    response = member_api.post(replacement_url(live_host.host), {"marked_for_replacement": True})
    assert response.status_code == 403
    assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None
    live_host.assert_not_replaced(live_host.register_again())


def test_a_demoted_admin_is_refused_the_replacement_action(django_user_model, live_host, give_role):
    staff = django_user_model.objects.create_user("former-admin")
    role = give_role(staff, "Session Host Contributor")
    api = api_for(staff)  # a token issued while they held the role
    assert api.get(f"/api/v1/sessionhosts/{live_host.host.pk}/").status_code == 200
    role.delete()

    response = api.post(replacement_url(live_host.host), {"marked_for_replacement": True})

    assert response.status_code == 403
    assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None
    live_host.assert_not_replaced(live_host.register_again())
