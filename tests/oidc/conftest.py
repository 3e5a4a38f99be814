"""A real OIDC provider (testbed/oidc.py: django-oauth-toolkit in its own process, over HTTPS with a test CA)
for the OIDC sign-in tests, one per test session, and the control plane configured against it
(settings.OIDC as WVD_OIDC_* would make it).

Each test makes its own provider users (names unique to the test), so tests share the one provider without
seeing each other's users. ``sign_in_at_provider`` plays the browser: our start URL, the provider's login
form, its redirect back to our callback, which the Django test client then opens.
"""
from __future__ import annotations

import itertools
import re
import secrets
from html import unescape
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.test import Client

from core import oidc
from testbed.oidc import OidcProvider

CLIENT_ID = "wvd-control-plane"
CLIENT_SECRET = "client-secret-" + secrets.token_hex(16)
PASSWORD = "provider-horse-battery"
CALLBACK = "https://testserver/accounts/oidc/callback/"
_serial = itertools.count(1)


@pytest.fixture(scope="session")
def oidc_provider():
    with OidcProvider() as provider:
        provider.add_client(CLIENT_ID, CLIENT_SECRET, CALLBACK)
        yield provider


def oidc_config(provider: OidcProvider, **overrides) -> dict:
    config = {
        "ISSUER": provider.issuer,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "GROUPS_CLAIM": "groups",
        "SCOPES": "openid email profile",
        "PROVIDER_NAME": "Test IdP",
        "CA_FILE": str(provider.ca_file),
        "TIMEOUT": 5,
    }
    return {**config, **overrides}


@pytest.fixture
def configured(oidc_provider, settings, db):
    """The control plane signing users in with the test provider."""
    settings.OIDC = oidc_config(oidc_provider)
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, oidc.BACKEND]
    settings.ROOT_URLCONF = "tests.oidc.urls"
    settings.TRUSTED_PROXIES = ()
    oidc.forget()
    yield settings
    oidc.forget()


@pytest.fixture
def provider_user(oidc_provider):
    """Makes a provider user with a name unique to the test; returns the name."""
    def make(base: str, groups: list[str] = (), **kwargs) -> str:
        name = f"{base}{next(_serial)}"
        oidc_provider.set_user(name, PASSWORD, list(groups), email=kwargs.pop("email", f"{name}@example.org"),
                               **kwargs)
        return name
    return make


def _csrf(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def authorize(client: Client, provider: OidcProvider, username: str, password: str = PASSWORD,
              next_path: str = "/") -> str:
    """Start at our login page's button and sign in at the provider's form; the callback URL the provider
    sends the browser to (not opened yet)."""
    start = client.get(f"/accounts/oidc/start/?next={next_path}", secure=True)
    assert start.status_code == 302, start.content[:500]
    location = start["Location"]
    assert location.startswith(provider.issuer), location
    browser = requests.Session()
    browser.trust_env = False  # REQUESTS_CA_BUNDLE and proxies from the environment would win over verify
    browser.verify = str(provider.ca_file)
    for _ in range(10):
        answer = browser.get(location, allow_redirects=False, timeout=10)
        if answer.status_code == 200 and "csrfmiddlewaretoken" in answer.text:  # the provider's login form
            answer = browser.post(answer.url, data={"csrfmiddlewaretoken": _csrf(answer.text), "username": username,
                                                    "password": password,
                                                    "next": unescape(re.search(r'name="next" value="([^"]*)"',
                                                                               answer.text).group(1))},
                                  headers={"Referer": answer.url}, allow_redirects=False, timeout=10)
            assert answer.status_code == 302, f"the provider refused the sign-in: {answer.text[:300]}"
        assert answer.status_code == 302, answer.text[:500]
        location = urljoin(answer.url, answer.headers["Location"])
        if location.startswith(CALLBACK):
            return location
    raise AssertionError(f"the provider never sent the browser back (last: {location})")


def callback_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def sign_in(client: Client, provider: OidcProvider, username: str, next_path: str = "/"):
    """The whole sign-in; our callback's response."""
    return client.get(callback_path(authorize(client, provider, username, next_path=next_path)), secure=True)
