"""Directory sign-in on every surface, against a real slapd: the directory's password signs in, a wrong one
is refused, a local account stays local, and a directory that is down or misconfigured is said so (not
"wrong password") while local admins still sign in."""
from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from prometheus_client import REGISTRY
from django.test import Client
from rest_framework.test import APIClient

from core.models import DirectoryAccount
from tests.conftest import PASSWORD as LOCAL_PASSWORD
from tests.directory.conftest import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
TOKEN_URL = "/api/v1/auth/token/"
LOGIN_URL = "/accounts/login/"
ADMIN_LOGIN_URL = "/admin/login/"
UNAVAILABLE = "could not be reached"


def user_page_sign_in(username: str, password: str):
    return Client().post(LOGIN_URL, {"username": username, "password": password})


def token_sign_in(username: str, password: str):
    return APIClient().post(TOKEN_URL, {"username": username, "password": password}, format="json")


def admin_sign_in(username: str, password: str):
    return Client().post(ADMIN_LOGIN_URL, {"username": username, "password": password, "next": "/admin/"})


def test_the_user_page_signs_in_with_the_directory_password(directory):
    name = directory.user("alice", given_name="Alice", surname="Liddell", mail="alice@example.org")

    response = user_page_sign_in(name, PASSWORD)

    assert (response.status_code, response["Location"]) == (302, "/")
    user = get_user_model().objects.get(username=name)
    assert (user.first_name, user.last_name, user.email) == ("Alice", "Liddell", "alice@example.org")
    assert not user.has_usable_password()  # the directory keeps the password
    assert DirectoryAccount.objects.get(user=user).dn == f"uid={name},ou=people,dc=example,dc=org"


def test_the_token_endpoint_signs_in_with_the_directory_password(directory):
    name = directory.user("bob")

    response = token_sign_in(name, PASSWORD)

    assert response.status_code == 201
    assert response.json()["username"] == name
    feed = APIClient()
    feed.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    assert feed.get("/api/v1/feed/").status_code == 200


def test_the_admin_login_takes_a_member_of_the_staff_group(directory):
    admin_name = directory.user("carol")
    plain_name = directory.user("dave")
    staff_cn = directory.group("helpdesk", [admin_name])
    directory.configure(STAFF_GROUP=f"cn={staff_cn},ou=groups,dc=example,dc=org")

    response = admin_sign_in(admin_name, PASSWORD)

    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert get_user_model().objects.get(username=admin_name).is_staff
    # Signed in (the password is right) but not staff: the admin's own refusal, on its form.
    assert admin_sign_in(plain_name, PASSWORD).status_code == 200
    assert user_page_sign_in(plain_name, PASSWORD).status_code == 302
    assert not get_user_model().objects.get(username=plain_name).is_staff


def test_leaving_the_staff_group_takes_staff_away_at_the_next_sign_in(directory):
    name = directory.user("erin")
    staff_cn = directory.group("admins", [name])
    directory.configure(STAFF_GROUP=f"cn={staff_cn},ou=groups,dc=example,dc=org")
    assert user_page_sign_in(name, PASSWORD).status_code == 302
    assert get_user_model().objects.get(username=name).is_staff

    directory.server.remove_member(staff_cn, name)
    assert user_page_sign_in(name, PASSWORD).status_code == 302

    assert not get_user_model().objects.get(username=name).is_staff


@pytest.mark.parametrize("surface", ["user page", "token", "admin"])
def test_a_wrong_directory_password_is_refused_as_a_wrong_password(directory, surface):
    name = directory.user("frank")

    if surface == "user page":
        response = user_page_sign_in(name, "not-the-password")
        assert response.status_code == 200
        assert "did not match" in response.content.decode()
    elif surface == "token":
        response = token_sign_in(name, "not-the-password")
        assert (response.status_code, response.json()["code"]) == (401, "invalid_credentials")
    else:
        response = admin_sign_in(name, "not-the-password")
        assert response.status_code == 200
        assert "Please enter the correct" in response.content.decode()
    assert not get_user_model().objects.filter(username=name).exists()


def test_the_username_is_matched_without_regard_to_case(directory):
    name = directory.user("grace")

    assert token_sign_in(name.upper(), PASSWORD).status_code == 201

    assert get_user_model().objects.filter(username=name).count() == 1


def test_a_directory_user_never_signs_in_as_a_local_account_of_that_name(directory, django_user_model, caplog):
    name = directory.name("admin")
    directory.server.add_user(name, "directory-password")
    local = django_user_model.objects.create_user(name, password=LOCAL_PASSWORD, is_staff=True, is_superuser=True)

    with caplog.at_level(logging.WARNING, logger="core.directory"):
        assert token_sign_in(name, "directory-password").status_code == 401

    assert token_sign_in(name, LOCAL_PASSWORD).status_code == 201  # the local password still works
    assert not DirectoryAccount.objects.filter(user=local).exists()
    assert "a local account has that name" in caplog.text


def test_a_deactivated_directory_user_stays_out(directory):
    name = directory.user("heidi")
    assert token_sign_in(name, PASSWORD).status_code == 201
    get_user_model().objects.filter(username=name).update(is_active=False)

    assert token_sign_in(name, PASSWORD).status_code == 401
    assert user_page_sign_in(name, PASSWORD).status_code == 200


def test_the_throttle_counts_wrong_directory_passwords(directory, settings):
    settings.AXES_FAILURE_LIMIT = 3
    name = directory.user("ivan")
    for _ in range(3):
        token_sign_in(name, "guess")

    response = token_sign_in(name, PASSWORD)

    assert (response.status_code, response.json()["code"]) == (429, "rate_limited")


# --- a directory that does not answer -----------------------------------------------------------------


@pytest.fixture
def local_admin(django_user_model):
    return django_user_model.objects.create_user("localadmin", password=LOCAL_PASSWORD, is_staff=True,
                                                 is_superuser=True)


def assert_unavailable_everywhere(name: str, password: str) -> None:
    response = token_sign_in(name, password)
    assert (response.status_code, response.json()["code"]) == (503, "directory_unavailable")
    assert UNAVAILABLE in response.json()["detail"]
    response = user_page_sign_in(name, password)
    assert response.status_code == 200
    page = response.content.decode()
    assert UNAVAILABLE in page and "did not match" not in page
    response = admin_sign_in(name, password)
    assert response.status_code == 200
    assert UNAVAILABLE in response.content.decode()


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("wvd_signin_refusals_total", {"reason": reason, "credential": "password"}) or 0.0


def test_a_directory_that_is_down_is_said_so_and_local_admins_sign_in(directory, unreachable_uri, local_admin,
                                                                      caplog):
    name = directory.user("judy")
    directory.configure(URI=unreachable_uri)
    before = refusals("directory_unavailable"), refusals("wrong_credentials")

    with caplog.at_level(logging.INFO):
        assert_unavailable_everywhere(name, PASSWORD)

    # Counted as the directory's failure, on each of the three surfaces; not as wrong passwords.
    assert (refusals("directory_unavailable"), refusals("wrong_credentials")) == (before[0] + 3, before[1])
    assert f"directory {unreachable_uri} failed while looking up the user: Can't contact LDAP server" in caplog.text
    assert f"sign-in as '{name}' from 127.0.0.1 failed at {TOKEN_URL}: the directory did not answer" in caplog.text
    assert "Traceback" not in caplog.text
    assert admin_sign_in("localadmin", LOCAL_PASSWORD).status_code == 302
    assert token_sign_in("localadmin", LOCAL_PASSWORD).status_code == 201
    assert user_page_sign_in("localadmin", LOCAL_PASSWORD).status_code == 302


def test_a_directory_that_hangs_is_given_up_on_after_its_timeout(directory, local_admin, caplog):
    """SIGSTOP: slapd's socket still accepts, nothing answers. Without WVD_LDAP_TIMEOUT the sign-in would wait
    for ever (and the test would fail by pytest's timeout)."""
    name = directory.user("ken")
    directory.configure(TIMEOUT=1)
    directory.server.pause()
    try:
        response = token_sign_in(name, PASSWORD)
        admin_response = admin_sign_in("localadmin", LOCAL_PASSWORD)
    finally:
        directory.server.resume()

    assert (response.status_code, response.json()["code"]) == (503, "directory_unavailable")
    assert admin_response.status_code == 302


def test_a_wrong_service_account_password_is_a_directory_failure_not_the_users(directory, caplog):
    name = directory.user("liam")
    directory.configure(BIND_PASSWORD="not-the-reader-password")

    with caplog.at_level(logging.WARNING, logger="core.directory"):
        assert_unavailable_everywhere(name, PASSWORD)

    assert "Invalid credentials" in caplog.text
