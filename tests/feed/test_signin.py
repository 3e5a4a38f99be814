"""POST /api/v1/auth/token/: a password for a short-lived bearer token, with failures rate limited."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import ApiToken
from tests.conftest import PASSWORD

URL = "/api/v1/auth/token/"


def _sign_in(client: APIClient, username: str, password: str, address: str = "192.0.2.10"):
    return client.post(URL, {"username": username, "password": password}, format="json", REMOTE_ADDR=address)


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_good_password_gets_a_token_that_opens_the_feed(member, desktop_group, anonymous_api):
    response = _sign_in(anonymous_api, "member", PASSWORD)

    assert response.status_code == 201
    body = response.json()
    assert body["token_type"] == "Bearer" and body["username"] == "member"
    assert body["expires_in"] == 3600
    assert response["Cache-Control"] == "no-store"
    feed = _bearer(body["token"]).get("/api/v1/feed/")
    assert feed.status_code == 200
    assert [item["id"] for item in feed.json()] == ["dag-a/desktop"]


def test_the_token_lives_for_the_configured_lifetime(member, anonymous_api, settings):
    settings.API_TOKEN_DEFAULT_LIFETIME = timedelta(minutes=5)
    before = timezone.now()

    body = _sign_in(anonymous_api, "member", PASSWORD).json()

    token = ApiToken.objects.get(user=member)
    assert token.description == "sign-in"
    assert before + timedelta(minutes=5) <= token.expires_at <= timezone.now() + timedelta(minutes=5)
    assert body["expires_in"] == 300


def test_form_encoded_sign_in_works_too(member, anonymous_api):
    response = anonymous_api.post(URL, {"username": "member", "password": PASSWORD})

    assert response.status_code == 201


def test_a_wrong_password_is_refused_with_401(member, anonymous_api):
    response = _sign_in(anonymous_api, "member", "not-the-password")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not ApiToken.objects.exists()


def test_an_unknown_user_and_a_disabled_user_get_the_same_answer(member, anonymous_api):
    member.is_active = False
    member.save()

    assert _sign_in(anonymous_api, "member", PASSWORD).json() == _sign_in(anonymous_api, "nobody", PASSWORD).json()


@pytest.mark.parametrize("body", [{}, {"username": "member"}, {"username": "", "password": "x"},
                                  {"username": "u" * 151, "password": "x"}, {"username": ["a"], "password": "x"}])
def test_malformed_sign_ins_are_refused_with_400(db, anonymous_api, body):
    response = anonymous_api.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_a_body_that_is_not_json_is_refused_with_400(db, anonymous_api):
    response = anonymous_api.post(URL, b"{not json", content_type="application/json")

    assert response.status_code == 400


def test_too_many_wrong_passwords_from_one_address_answer_429_there_even_for_the_right_one(member, anonymous_api,
                                                                                          settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        assert _sign_in(anonymous_api, "member", "guess").status_code == 401
    assert _sign_in(anonymous_api, "member", "guess").status_code == 429  # the third reaches the limit

    response = _sign_in(anonymous_api, "MEMBER", PASSWORD)

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert response["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    assert not ApiToken.objects.exists()


def test_wrong_passwords_from_other_addresses_do_not_lock_the_user_out(member, anonymous_api, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for number in range(10):
        _sign_in(anonymous_api, "member", "guess", address=f"192.0.2.{number}")

    assert _sign_in(anonymous_api, "member", PASSWORD, address="198.51.100.7").status_code == 201


def test_failures_for_other_users_from_one_address_lock_out_nobody_else_there(member, outsider, anonymous_api,
                                                                              settings):
    settings.AXES_FAILURE_LIMIT = 4
    for name in ("a", "b", "c", "d", "e", "f"):
        assert _sign_in(anonymous_api, name, "guess").status_code == 401

    assert _sign_in(anonymous_api, "outsider", PASSWORD).status_code == 201


def test_a_successful_sign_in_clears_the_users_failures(member, anonymous_api, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        _sign_in(anonymous_api, "member", "guess")
    assert _sign_in(anonymous_api, "member", PASSWORD).status_code == 201

    for _ in range(2):
        _sign_in(anonymous_api, "member", "guess")
    assert _sign_in(anonymous_api, "member", PASSWORD).status_code == 201


def test_the_rate_limit_is_logged(member, anonymous_api, settings, caplog):
    settings.AXES_FAILURE_LIMIT = 1
    _sign_in(anonymous_api, "member", "guess")

    _sign_in(anonymous_api, "member", PASSWORD)

    assert any("'member' from 192.0.2.10 refused" in record.getMessage()
               and "too many failed attempts" in record.getMessage() for record in caplog.records)


def test_an_expired_token_is_refused_with_a_clear_message(member, anonymous_api):
    token = _sign_in(anonymous_api, "member", PASSWORD).json()["token"]
    ApiToken.objects.filter(user=member).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = _bearer(token).get("/api/v1/feed/")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid, expired or revoked token."


def test_a_tampered_token_is_refused_with_a_clear_message(member, anonymous_api):
    token = _sign_in(anonymous_api, "member", PASSWORD).json()["token"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")

    response = _bearer(tampered).get("/RDWeb/Feed/webfeed.aspx")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid, expired or revoked token."


def test_signing_in_removes_the_users_long_expired_sign_in_tokens(member, anonymous_api):
    old, _ = ApiToken.issue(member, description="sign-in", lifetime=timedelta(hours=1))
    ApiToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(days=2))
    kept, _ = ApiToken.issue(member, description="my script")
    ApiToken.objects.filter(pk=kept.pk).update(expires_at=timezone.now() - timedelta(days=2))

    _sign_in(anonymous_api, "member", PASSWORD)

    assert not ApiToken.objects.filter(pk=old.pk).exists()
    assert ApiToken.objects.filter(pk=kept.pk).exists()
