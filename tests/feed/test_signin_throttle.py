"""One sign-in throttle on every surface where a password is tried: the admin login, the user page's login
(the portal signs in there too) and the API's token endpoint. Failures count per user name and client
address together: a guesser is locked out of that user from its own address, nobody else is."""
from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient, Client

from tests.conftest import PASSWORD

GUESSER = "203.0.113.66"
ELSEWHERE = "198.51.100.7"
PROXY = "10.0.0.5"

SURFACES = ["admin", "user page", "api"]
URLS = {"admin": "/admin/login/", "user page": "/accounts/login/", "api": "/api/v1/auth/token/"}


def attempt(surface: str, username: str, password: str, address: str, **headers):
    """One sign-in on ``surface`` by a client of its own (no session shared with other attempts)."""
    client = Client(REMOTE_ADDR=address, **headers)
    if surface == "api":
        return client.post(URLS[surface], {"username": username, "password": password},
                           content_type="application/json")
    return client.post(URLS[surface], {"username": username, "password": password, "next": "/"})


def signed_in(surface: str, response) -> bool:
    return response.status_code == (201 if surface == "api" else 302)


def fail(surface: str, times: int, username: str = "admin", address: str = GUESSER, **headers) -> list[int]:
    return [attempt(surface, username, "a guess", address, **headers).status_code for _ in range(times)]


@pytest.fixture(autouse=True)
def limits(settings):
    """The defaults, whatever the environment running the tests says."""
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.TRUSTED_PROXIES = ()


@pytest.mark.parametrize("surface", SURFACES)
def test_a_guesser_is_refused_with_429_at_the_limit_even_with_the_right_password(surface, admin_user):
    statuses = fail(surface, 5)

    assert statuses[-1] == 429 and 429 not in statuses[:-1]
    response = attempt(surface, "admin", PASSWORD, GUESSER)
    assert response.status_code == 429
    assert response["Retry-After"] == "900"


def test_forty_wrong_admin_passwords_do_not_let_the_forty_first_guess_in(admin_user):
    statuses = fail("admin", 40)

    assert statuses.count(429) == 36
    assert attempt("admin", "admin", PASSWORD, GUESSER).status_code == 429


@pytest.mark.parametrize("surface", SURFACES)
def test_the_right_password_from_another_address_still_signs_in(surface, admin_user):
    fail(surface, 8)

    assert signed_in(surface, attempt(surface, "admin", PASSWORD, ELSEWHERE))


@pytest.mark.parametrize("guessed_on", SURFACES)
@pytest.mark.parametrize("signs_in_on", SURFACES)
def test_a_third_party_cannot_lock_a_user_out_of_any_surface(guessed_on, signs_in_on, admin_user):
    fail(guessed_on, 30)

    assert signed_in(signs_in_on, attempt(signs_in_on, "admin", PASSWORD, ELSEWHERE))


@pytest.mark.parametrize("surface", SURFACES)
def test_a_lockout_holds_on_every_surface(surface, admin_user):
    fail("api", 5)

    assert attempt(surface, "admin", PASSWORD, GUESSER).status_code == 429


def test_guessing_many_names_from_one_address_locks_out_nobody_else_there(member, admin_user):
    for number in range(40):
        assert attempt("api", f"user-{number}", "a guess", GUESSER).status_code == 401

    assert signed_in("api", attempt("api", "member", PASSWORD, GUESSER))
    assert signed_in("admin", attempt("admin", "admin", PASSWORD, GUESSER))


def test_a_user_names_case_and_spaces_do_not_make_a_fresh_count(admin_user):
    fail("api", 2, "admin")
    fail("api", 2, "ADMIN")

    assert fail("api", 1, " Admin ") == [429]


def test_a_success_clears_the_count_of_its_own_address(admin_user):
    fail("admin", 4)
    assert signed_in("admin", attempt("admin", "admin", PASSWORD, GUESSER))

    assert fail("admin", 4) == [200] * 4


@pytest.mark.parametrize("surface", ["admin", "user page"])
def test_the_sign_in_form_says_how_long_to_wait_with_429(surface, admin_user):
    fail(surface, 5)

    response = attempt(surface, "admin", PASSWORD, GUESSER)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-ins. Try again in 15 minutes." in page
    assert 'name="password"' in page  # the form again, to try later
    assert "_auth_user_id" not in response.client.session


def test_the_api_says_how_long_to_wait_with_429(admin_user):
    fail("api", 5)

    response = attempt("api", "admin", PASSWORD, GUESSER)

    assert response.status_code == 429
    assert response.json() == {"detail": "Too many failed sign-ins; try again in 15 minutes.",
                               "code": "rate_limited"}
    assert response["Retry-After"] == "900"


@pytest.mark.parametrize("surface", SURFACES)
def test_each_failure_and_each_refusal_is_logged_in_one_line_without_the_password(surface, admin_user, caplog):
    caplog.set_level(logging.INFO)
    fail(surface, 4)
    attempt(surface, "admin", "the-fifth-guess", GUESSER)
    attempt(surface, "admin", PASSWORD, GUESSER)

    lines = [record.getMessage() for record in caplog.records if record.name == "core.throttle"]
    assert len(lines) == 6
    assert all(f"'admin' from {GUESSER} " in line for line in lines)
    assert sum(" failed at " in line for line in lines) == 4
    assert sum("refused" in line and "too many failed attempts" in line for line in lines) == 2
    assert "the-fifth-guess" not in caplog.text and PASSWORD not in caplog.text


# --- behind a reverse proxy ------------------------------------------------------------------------


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = (ipaddress.ip_network("10.0.0.0/24"),)


def test_behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for(behind_proxy, admin_user):
    fail("admin", 5, address=PROXY, HTTP_X_FORWARDED_FOR=GUESSER)

    assert signed_in("admin", attempt("admin", "admin", PASSWORD, PROXY, HTTP_X_FORWARDED_FOR=ELSEWHERE))
    assert attempt("admin", "admin", PASSWORD, PROXY, HTTP_X_FORWARDED_FOR=GUESSER).status_code == 429


def test_a_guesser_cannot_escape_its_lockout_by_forging_x_forwarded_for(behind_proxy, admin_user):
    fail("api", 5, address=PROXY, HTTP_X_FORWARDED_FOR=GUESSER)

    forged = f"{ELSEWHERE}, {GUESSER}"  # the proxy appended the real one
    assert attempt("api", "admin", PASSWORD, PROXY, HTTP_X_FORWARDED_FOR=forged).status_code == 429


def test_without_trusted_proxies_x_forwarded_for_is_ignored(admin_user):
    fail("api", 5, HTTP_X_FORWARDED_FOR="192.0.2.1")

    assert attempt("api", "admin", PASSWORD, GUESSER, HTTP_X_FORWARDED_FOR=ELSEWHERE).status_code == 429


def test_an_ipv6_client_counts_by_its_64_so_it_cannot_hop_addresses(admin_user):
    for host in range(5):
        attempt("api", "admin", "a guess", f"2001:db8:1:2::{host + 1:x}")

    assert attempt("api", "admin", PASSWORD, "2001:db8:1:2::ffff").status_code == 429
    assert signed_in("api", attempt("api", "admin", PASSWORD, "2001:db8:1:3::1"))


# --- under ASGI, as `serve` runs it ----------------------------------------------------------------


@pytest.fixture
async def asgi_client():
    """The async middleware chain, as daphne runs it. Its sync views run in one worker thread, whose
    database connection is closed afterwards so no test database is left in use."""
    yield AsyncClient()
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_admin_form_says_how_long_to_wait_and_each_refusal_is_logged_once(admin_user,
                                                                                                asgi_client,
                                                                                                caplog):
    client = asgi_client
    for _ in range(5):
        response = await client.post(URLS["admin"], {"username": "admin", "password": "a guess"})

    assert response.status_code == 429 and response["Retry-After"] == "900"
    assert "Too many failed sign-ins. Try again in 15 minutes." in response.content.decode()
    api = await client.post(URLS["api"], {"username": "admin", "password": PASSWORD}, content_type="application/json")
    assert api.status_code == 429 and api.json()["code"] == "rate_limited"
    refusals = [record for record in caplog.records if record.name == "core.throttle" and "refused" in record.message]
    assert len(refusals) == 2
