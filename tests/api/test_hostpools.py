"""Host pools over the API: CRUD through the model's rules, and the registration token shown once."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from broker.models import HostPool


def test_it_creates_a_host_pool_with_defaults(admin_api):
    response = admin_api.post("/api/v1/hostpools/", {"name": "pool-b", "friendly_name": "Pool B"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["pool_type"] == "pooled"
    assert body["load_balancer"] == "breadth_first"
    assert body["has_valid_registration_token"] is False
    assert body["registration_token_expires_at"] is None
    assert HostPool.objects.get(pk=body["id"]).friendly_name == "Pool B"


def test_it_never_shows_the_registration_token_hash(admin_api, pooled_pool):
    pooled_pool.issue_registration_token()
    for body in (admin_api.get(f"/api/v1/hostpools/{pooled_pool.pk}/").json(),
                 admin_api.get("/api/v1/hostpools/").json()["results"][0]):
        assert "registration_token_hash" not in body
        assert pooled_pool.registration_token_hash not in str(body)
        assert body["has_valid_registration_token"] is True


def test_it_refuses_a_duplicate_name_whatever_its_case(admin_api, pooled_pool):
    response = admin_api.post("/api/v1/hostpools/", {"name": "POOL-A"})
    assert response.status_code == 400
    assert response.json() == {"name": ["A host pool with this name already exists."]}


def test_renaming_a_pool_to_its_own_name_in_another_case_is_allowed(admin_api, pooled_pool):
    response = admin_api.patch(f"/api/v1/hostpools/{pooled_pool.pk}/", {"name": "Pool-A"})
    assert response.status_code == 200, response.json()


def test_it_refuses_invalid_fields_with_their_errors(admin_api):
    response = admin_api.post(
        "/api/v1/hostpools/",
        {"name": "has space", "pool_type": "shared", "max_session_limit": 0, "load_balancer": ""},
    )
    assert response.status_code == 400
    assert set(response.json()) == {"name", "pool_type", "max_session_limit", "load_balancer"}


def test_a_missing_name_is_a_field_error(admin_api):
    response = admin_api.post("/api/v1/hostpools/", {})
    assert response.status_code == 400
    assert "name" in response.json()


def test_the_pool_type_cannot_change_after_creation(admin_api, pooled_pool):
    response = admin_api.patch(f"/api/v1/hostpools/{pooled_pool.pk}/", {"pool_type": "personal"})
    assert response.status_code == 400
    assert "pool_type" in response.json()
    pooled_pool.refresh_from_db()
    assert pooled_pool.pool_type == "pooled"


def test_a_full_update_may_repeat_the_same_pool_type(admin_api, personal_pool):
    response = admin_api.put(
        f"/api/v1/hostpools/{personal_pool.pk}/",
        {"name": "pool-personal", "pool_type": "personal", "max_session_limit": 1, "personal_assignment": "direct"},
    )
    assert response.status_code == 200, response.json()
    personal_pool.refresh_from_db()
    assert personal_pool.personal_assignment == "direct"


def test_deleting_a_pool_in_use_is_a_conflict_not_an_error(admin_api, desktop_group, session_host):
    pool = desktop_group.host_pool
    response = admin_api.delete(f"/api/v1/hostpools/{pool.pk}/")
    assert response.status_code == 409
    assert set(response.json()["in_use_by"]) >= {"session host: host-1.example.net"}
    assert HostPool.objects.filter(pk=pool.pk).exists()
    # The refused delete leaves the connection usable: the next request works.
    assert admin_api.get(f"/api/v1/hostpools/{pool.pk}/").status_code == 200


def test_deleting_an_unused_pool_works(admin_api, personal_pool):
    assert admin_api.delete(f"/api/v1/hostpools/{personal_pool.pk}/").status_code == 204
    assert not HostPool.objects.filter(pk=personal_pool.pk).exists()


@pytest.mark.parametrize("pk", ["999999", "99999999999999999999999", "abc"])
def test_unknown_ids_are_404(admin_api, pk):
    assert admin_api.get(f"/api/v1/hostpools/{pk}/").status_code == 404
    assert admin_api.patch(f"/api/v1/hostpools/{pk}/", {"friendly_name": "x"}).status_code == 404
    assert admin_api.delete(f"/api/v1/hostpools/{pk}/").status_code == 404
    assert admin_api.post(f"/api/v1/hostpools/{pk}/registration-token/", {}).status_code == 404


def test_filters_search_and_ordering(admin_api, pooled_pool, personal_pool):
    def names(query: str) -> list[str]:
        response = admin_api.get(f"/api/v1/hostpools/?{query}")
        assert response.status_code == 200, response.json()
        return [pool["name"] for pool in response.json()["results"]]

    assert names("pool_type=personal") == ["pool-personal"]
    assert names("name=POOL-A") == ["pool-a"]
    assert names("search=personal") == ["pool-personal"]
    assert names("ordering=-name") == ["pool-personal", "pool-a"]
    assert names("limit=1&offset=1") == ["pool-personal"]
    personal_pool.issue_registration_token()
    assert names("has_valid_registration_token=true") == ["pool-personal"]
    assert names("has_valid_registration_token=false") == ["pool-a"]


def test_a_bad_filter_value_is_a_400_naming_the_filter(admin_api):
    response = admin_api.get("/api/v1/hostpools/?pool_type=shared")
    assert response.status_code == 400
    assert "pool_type" in response.json()


# --- the registration token ---------------------------------------------------------------------

def test_the_registration_token_is_shown_once_and_lets_a_host_join(admin_api, pooled_pool):
    url = f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/"
    before = timezone.now()
    response = admin_api.post(url, {"lifetime_hours": 2})
    after = timezone.now()
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    assert HostPool.for_registration_token(body["token"]) == pooled_pool

    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(hours=2) <= expires_at <= after + timedelta(hours=2)
    shown = admin_api.get(f"/api/v1/hostpools/{pooled_pool.pk}/").json()
    assert body["token"] not in str(shown)
    assert shown["has_valid_registration_token"] is True
    assert datetime.fromisoformat(shown["registration_token_expires_at"]) == expires_at


def test_without_a_lifetime_the_token_lives_the_default_time(admin_api, pooled_pool, settings):
    before = timezone.now()
    response = admin_api.post(f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/")
    after = timezone.now()
    assert response.status_code == 201
    expires_at = datetime.fromisoformat(response.json()["expires_at"])
    default = timedelta(hours=settings.REGISTRATION_TOKEN_DEFAULT_HOURS)
    assert before + default <= expires_at <= after + default


def test_a_new_token_replaces_the_old_one(admin_api, pooled_pool):
    url = f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/"
    first = admin_api.post(url, {}).json()["token"]
    second = admin_api.post(url, {}).json()["token"]
    assert HostPool.for_registration_token(first) is None
    assert HostPool.for_registration_token(second) == pooled_pool


def test_delete_revokes_the_registration_token(admin_api, pooled_pool):
    url = f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/"
    token = admin_api.post(url, {}).json()["token"]
    assert admin_api.delete(url).status_code == 204
    assert HostPool.for_registration_token(token) is None
    shown = admin_api.get(f"/api/v1/hostpools/{pooled_pool.pk}/").json()
    assert shown["has_valid_registration_token"] is False
    assert shown["registration_token_expires_at"] is None


@pytest.mark.parametrize("lifetime", [0, -1, 721, "a day", 1.5, None, True])
def test_it_refuses_a_bad_lifetime(admin_api, pooled_pool, lifetime):
    response = admin_api.post(f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/", {"lifetime_hours": lifetime})
    assert response.status_code == 400
    assert "lifetime_hours" in response.json()
    pooled_pool.refresh_from_db()
    assert pooled_pool.registration_token_hash == ""


def test_the_registration_token_body_must_be_json(admin_api, pooled_pool):
    response = admin_api.post(
        f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/", {"lifetime_hours": 2}, format="multipart"
    )
    assert response.status_code == 415
