"""API tokens: how a request authenticates, and each user managing their own tokens."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import ApiToken


def _client(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


# --- authentication ------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_a_token_authenticates_with_either_scheme(admin_user, scheme):
    _, key = ApiToken.issue(admin_user)
    assert _client(f"{scheme} {key}").get("/api/v1/hostpools/").status_code == 200


def test_an_expired_token_is_refused(admin_user):
    token, key = ApiToken.issue(admin_user, lifetime=timedelta(hours=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _client(f"Bearer {key}").get("/api/v1/hostpools/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused(admin_user):
    token, key = ApiToken.issue(admin_user)
    token.revoke()
    assert _client(f"Token {key}").get("/api/v1/hostpools/").status_code == 401


@pytest.mark.parametrize("header", [
    "Bearer wvd_not-a-real-token", "Bearer", "Bearer a b", "Token nottheprefix", "Bearer " + "x" * 5000,
])
def test_bad_credentials_are_refused(db, header):
    assert _client(header).get("/api/v1/tokens/").status_code == 401


def test_a_token_records_when_it_was_used(admin_user):
    token, key = ApiToken.issue(admin_user)
    _client(f"Bearer {key}").get("/api/v1/hostpools/")
    token.refresh_from_db()
    assert token.last_used_at is not None


# --- managing tokens -----------------------------------------------------------------------------

def test_a_plain_user_creates_a_token_and_sees_its_text_once(member, member_api):
    response = member_api.post("/api/v1/tokens/", {"description": "laptop"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["token"].startswith(body["prefix"])
    assert body["expires_at"] is None
    assert body["username"] == "member"
    # The new token works, and it is never shown again.
    assert _client(f"Bearer {body['token']}").get("/api/v1/tokens/").status_code == 200
    shown = member_api.get(f"/api/v1/tokens/{body['id']}/").json()
    assert "token" not in shown
    assert body["token"] not in str(member_api.get("/api/v1/tokens/").json())


def test_a_token_can_expire(member_api):
    before = timezone.now()
    response = member_api.post("/api/v1/tokens/", {"lifetime_hours": 24})
    after = timezone.now()
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert before + timedelta(hours=24) <= token.expires_at <= after + timedelta(hours=24)


@pytest.mark.parametrize("data", [
    {"lifetime_hours": 0}, {"lifetime_hours": 8761}, {"lifetime_hours": "soon"}, {"description": "x" * 201},
])
def test_it_refuses_bad_token_requests(member_api, data):
    response = member_api.post("/api/v1/tokens/", data)
    assert response.status_code == 400
    assert set(response.json()) == set(data)


def test_a_user_lists_only_their_own_tokens(member, outsider, member_api):
    ApiToken.issue(outsider, description="outsider's")
    descriptions = {t["description"] for t in member_api.get("/api/v1/tokens/").json()["results"]}
    assert descriptions == {"test"}  # The one tests/conftest.py made for the member's client.


def test_a_user_cannot_see_or_revoke_another_users_token(outsider, member_api):
    theirs, key = ApiToken.issue(outsider)
    assert member_api.get(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert member_api.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert _client(f"Bearer {key}").get("/api/v1/tokens/").status_code == 200


def test_delete_revokes_a_token_which_stays_listed(member, member_api):
    token, key = ApiToken.issue(member, description="old laptop")
    assert member_api.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert _client(f"Bearer {key}").get("/api/v1/tokens/").status_code == 401
    shown = member_api.get(f"/api/v1/tokens/{token.pk}/").json()
    assert shown["is_usable"] is False and shown["revoked_at"] is not None
    # Revoking again changes nothing.
    assert member_api.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204


def test_a_user_can_revoke_the_token_they_are_using(member, member_api):
    own = ApiToken.objects.get(user=member)
    assert member_api.delete(f"/api/v1/tokens/{own.pk}/").status_code == 204
    assert member_api.get("/api/v1/tokens/").status_code == 401


def test_staff_see_and_revoke_every_users_tokens(admin_api, outsider):
    theirs, _ = ApiToken.issue(outsider, description="outsider's")
    listed = admin_api.get(f"/api/v1/tokens/?user={outsider.pk}").json()["results"]
    assert [t["description"] for t in listed] == ["outsider's"]
    assert admin_api.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == 204
    theirs.refresh_from_db()
    assert theirs.revoked_at is not None


def test_tokens_filter_by_usability(member, member_api):
    revoked, _ = ApiToken.issue(member, description="revoked")
    revoked.revoke()
    expired, _ = ApiToken.issue(member, description="expired", lifetime=timedelta(hours=1))
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    def descriptions(query: str) -> set[str]:
        return {t["description"] for t in member_api.get(f"/api/v1/tokens/?{query}").json()["results"]}

    assert descriptions("usable=true") == {"test"}
    assert descriptions("usable=false") == {"revoked", "expired"}
    assert descriptions("revoked=true") == {"revoked"}


def test_tokens_cannot_be_edited(member, member_api):
    own = ApiToken.objects.get(user=member)
    assert member_api.patch(f"/api/v1/tokens/{own.pk}/", {"description": "x"}).status_code == 405


def test_anonymous_requests_cannot_manage_tokens(anonymous_api):
    assert anonymous_api.get("/api/v1/tokens/").status_code == 401
    assert anonymous_api.post("/api/v1/tokens/", {}).status_code == 401


def test_an_expiring_token_cannot_mint_a_token_that_outlives_it(member):
    _, key = ApiToken.issue(member, lifetime=timedelta(hours=2))
    client = _client(f"Bearer {key}")
    for data in ({}, {"lifetime_hours": 3}):
        response = client.post("/api/v1/tokens/", data)
        assert response.status_code == 400
        assert "lifetime_hours" in response.json()
    assert client.post("/api/v1/tokens/", {"lifetime_hours": 1}).status_code == 201


@pytest.mark.parametrize("user", ["9223372036854775808", "99999999999999999999999", "0", "-3", "1.5", "x"])
def test_a_user_filter_that_cannot_be_a_user_id_is_a_400(member_api, user):
    # Any signed-in user may list their tokens; a number no database can hold used to answer 500.
    assert member_api.get("/api/v1/tokens/", {"user": user}).status_code == 400
