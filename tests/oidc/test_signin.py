"""OIDC sign-in against a real provider process (django-oauth-toolkit, testbed/oidc.py): the code flow with
PKCE, state and nonce from our login page's button to the user page; the groups claim gives the desktop
assigned to the group, and leaving the group at the provider takes it away at the next sign-in and makes the
gateway refuse a ticket issued before; every failure is a clear page and a log line, never a traceback."""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from prometheus_client import REGISTRY

from broker.models import GatewayInstance
from core import oidc
from core.models import OidcAccount, OidcGroup, RoleAssignment, UserAccessChange
from core.tickets import issue_connection_ticket
from feed.models import ApplicationGroup, Assignment
from gateway import records
from testbed.ports import free_port
from tests.oidc.conftest import _serial, authorize, callback_path, oidc_config, sign_in
from wire.errors import ErrorCode

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def sales_desktop(pooled_pool, workspace):
    return ApplicationGroup.objects.create(name="dag-sales", friendly_name="Sales desktop", group_type="desktop",
                                           host_pool=pooled_pool, workspace=workspace)


@pytest.fixture
def gateway(db):
    return GatewayInstance.objects.create(name="gw-test", public_host="127.0.0.1", public_port=8443)


def user_named(name: str):
    return get_user_model().objects.get(username=name)


def ticket_for(user, group: ApplicationGroup) -> str:
    return issue_connection_ticket(user=user, application_group_id=group.pk, resource=f"{group.name}/desktop",
                                   host_pool_id=group.host_pool_id, host_pool_name=group.host_pool.name)


def test_the_login_page_shows_the_providers_button_only_when_configured(client, db, settings, oidc_provider):
    settings.OIDC = None
    assert "Sign in with" not in client.get("/accounts/login/", secure=True).content.decode()

    settings.OIDC = oidc_config(oidc_provider)
    settings.ROOT_URLCONF = "tests.oidc.urls"
    page = client.get("/accounts/login/?next=/portal/", secure=True).content.decode()

    assert "Sign in with Test IdP" in page
    assert 'href="/accounts/oidc/start/?next=%2Fportal%2F"' in page
    assert 'name="password"' in page  # local sign-in stays


def test_unconfigured_there_are_no_oidc_urls(client, db, settings):
    settings.OIDC = None

    assert client.get("/accounts/oidc/start/", secure=True).status_code == 404
    assert client.get("/accounts/oidc/callback/?code=x&state=y", secure=True).status_code == 404


def test_the_start_sends_the_browser_to_the_provider_with_pkce_state_and_nonce(configured, oidc_provider):
    client = Client()
    response = client.get("/accounts/oidc/start/", secure=True)

    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert response["Location"].startswith(oidc_provider.discovery()["authorization_endpoint"])
    assert query["client_id"] == ["wvd-control-plane"]
    assert query["redirect_uri"] == ["https://testserver/accounts/oidc/callback/"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["scope"] == ["openid email profile"]


def test_a_provider_user_signs_in_and_sees_the_desktop_of_their_group(configured, oidc_provider, provider_user,
                                                                     sales_desktop):
    name = provider_user("alice", groups=["sales"])
    # The admin assigns the provider's group before anyone of it has signed in (manage.py oidc_groups add).
    sales = Group.objects.create(name="sales")
    OidcGroup.objects.create(group=sales)
    Assignment.objects.create(application_group=sales_desktop, group=sales)
    client = Client()

    response = sign_in(client, oidc_provider, name, next_path="/")

    assert response.status_code == 302 and response["Location"] == "/"
    user = user_named(name)
    assert user.oidc_account.issuer == oidc_provider.issuer
    assert user.email == f"{name}@example.org" and not user.has_usable_password()
    assert set(user.groups.values_list("name", flat=True)) == {"sales"}
    page = client.get("/", secure=True)
    assert page.status_code == 200 and "Sales desktop" in page.content.decode()


def test_the_same_provider_user_is_the_same_account_at_every_sign_in(configured, oidc_provider, provider_user):
    name = provider_user("bob")
    sign_in(Client(), oidc_provider, name)
    oidc_provider.set_user(name, "provider-horse-battery", email="new-address@example.org")

    sign_in(Client(), oidc_provider, name)

    account = OidcAccount.objects.get(issuer=oidc_provider.issuer)
    assert OidcAccount.objects.filter(issuer=oidc_provider.issuer, subject=account.subject).count() == 1
    assert account.user.username == name and account.user.email == "new-address@example.org"


def test_leaving_the_group_at_the_provider_takes_the_desktop_away_and_refuses_old_tickets(
        configured, oidc_provider, provider_user, sales_desktop, gateway):
    name = provider_user("carol", groups=["sales", "other"])
    sign_in(Client(), oidc_provider, name)
    Assignment.objects.create(application_group=sales_desktop, group=Group.objects.get(name="sales"))
    UserAccessChange.objects.all().delete()  # the first sign-in's own change is not what this test is about
    user = user_named(name)
    ticket = ticket_for(user, sales_desktop)
    assert isinstance(records.admit(ticket, "192.0.2.20", "gw-test"), records.Admission)

    oidc_provider.set_user(name, "provider-horse-battery", groups=["other"])
    client = Client()
    sign_in(client, oidc_provider, name)

    assert set(user.groups.values_list("name", flat=True)) == {"other"}
    assert "Sales desktop" not in client.get("/", secure=True).content.decode()
    assert UserAccessChange.objects.get(user_id=user.pk).reason == "group membership changed"
    assert records.admit(ticket, "192.0.2.20", "gw-test").code == ErrorCode.ConnectionFailedUserNotAuthorized


def test_local_groups_are_kept_and_never_joined_by_a_claim(configured, oidc_provider, provider_user, caplog):
    name = provider_user("dave", groups=["admins", "sales"])
    admins = Group.objects.create(name="admins")  # a local group a claim happens to name
    sign_in(Client(), oidc_provider, name)
    user = user_named(name)
    helpdesk = Group.objects.create(name="helpdesk")
    user.groups.add(helpdesk)

    with caplog.at_level(logging.WARNING, logger="core.oidc"):
        sign_in(Client(), oidc_provider, name)

    assert set(user.groups.values_list("name", flat=True)) == {"sales", "helpdesk"}
    assert not admins.user_set.exists()
    assert "it is a local group" in caplog.text


def test_the_portal_takes_a_user_whose_provider_group_holds_a_role(configured, oidc_provider, provider_user):
    """Staff status grants nothing (docs/roles.md): a role given to the provider's group opens the portal."""
    helpdesk = f"helpdesk{next(_serial)}"
    name = provider_user("erin", groups=[helpdesk])
    client = Client()
    assert sign_in(client, oidc_provider, name)["Location"] == "/"
    assert client.get("/portal/", secure=True).status_code == 403  # no role yet
    RoleAssignment.objects.create(role="Desktop Virtualization Reader", group=Group.objects.get(name=helpdesk),
                                  scope_type="all")

    response = sign_in(client, oidc_provider, name, next_path="/portal/")

    assert response["Location"] == "/portal/"
    assert client.get("/portal/", secure=True).status_code == 200


# --- failures: a clear page, never a traceback -----------------------------------------------------------


def test_a_callback_with_a_state_this_session_did_not_start_is_refused(configured, oidc_provider, provider_user,
                                                                       caplog):
    name = provider_user("frank")
    url = authorize(Client(), oidc_provider, name)  # another browser's sign-in
    client = Client()
    client.get("/accounts/oidc/start/", secure=True)

    refusals = REGISTRY.get_sample_value("wvd_signin_refusals_total",
                                         {"reason": "stale_sign_in", "credential": "oidc"}) or 0

    with caplog.at_level(logging.WARNING, logger="core.oidc"):
        response = client.get(callback_path(url), secure=True)

    assert REGISTRY.get_sample_value("wvd_signin_refusals_total",
                                     {"reason": "stale_sign_in", "credential": "oidc"}) == refusals + 1
    assert response.status_code == 400
    assert "expired or was already used" in response.content.decode()
    assert "StaleSignIn" in caplog.text
    assert not get_user_model().objects.filter(username=name).exists()


def test_a_callback_is_used_once(configured, oidc_provider, provider_user):
    name = provider_user("grace")
    client = Client()
    url = authorize(client, oidc_provider, name)
    assert client.get(callback_path(url), secure=True).status_code == 302
    client.logout()

    response = client.get(callback_path(url), secure=True)

    assert response.status_code == 400 and "_auth_user_id" not in client.session


def test_the_provider_refusing_is_said_so(configured, oidc_provider):
    client = Client()
    start = client.get("/accounts/oidc/start/", secure=True)
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]

    response = client.get(f"/accounts/oidc/callback/?error=access_denied&state={state}&error_description=go+away",
                          secure=True)

    assert response.status_code == 403
    assert "did not sign you in" in response.content.decode() and "go away" not in response.content.decode()


def test_a_wrong_client_secret_is_refused_by_the_provider_and_said_so(configured, oidc_provider, provider_user):
    name = provider_user("heidi")
    configured.OIDC = {**configured.OIDC, "CLIENT_SECRET": "not-the-secret"}

    response = sign_in(Client(), oidc_provider, name)

    assert response.status_code == 403 and "did not sign you in" in response.content.decode()


def test_a_provider_that_is_down_is_said_so(configured, caplog):
    configured.OIDC = {**configured.OIDC, "ISSUER": f"https://127.0.0.1:{free_port()}/o"}

    with caplog.at_level(logging.WARNING, logger="core.oidc"):
        response = Client().get("/accounts/oidc/start/", secure=True)

    assert response.status_code == 503
    assert "could not be reached" in response.content.decode()
    assert "could not be fetched" in caplog.text


def test_a_provider_we_do_not_trust_is_not_talked_to(configured):
    configured.OIDC = {**configured.OIDC, "CA_FILE": ""}  # the provider's test CA is not in certifi's bundle

    response = Client().get("/accounts/oidc/start/", secure=True)

    assert response.status_code == 503


def test_a_discovery_document_for_another_issuer_is_refused(configured, oidc_provider):
    configured.OIDC = {**configured.OIDC, "ISSUER": oidc_provider.issuer.replace("127.0.0.1", "localhost")}

    with pytest.raises(oidc.ProviderUnavailable, match="names the issuer"):
        oidc.provider()


def test_a_deactivated_user_is_not_signed_in(configured, oidc_provider, provider_user):
    name = provider_user("ivan")
    sign_in(Client(), oidc_provider, name)
    get_user_model().objects.filter(username=name).update(is_active=False)
    client = Client()

    response = sign_in(client, oidc_provider, name)

    assert response.status_code == 403 and "disabled" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_provider_that_accepts_but_never_answers_is_given_up_on_after_the_timeout(configured):
    with socket.socket() as silent:  # connections queue in the backlog and are never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        configured.OIDC = {**configured.OIDC, "ISSUER": f"https://127.0.0.1:{silent.getsockname()[1]}/o",
                           "TIMEOUT": 1}

        response = Client().get("/accounts/oidc/start/", secure=True)

    # Without the timeout this would hang until pytest-timeout fails it.
    assert response.status_code == 503 and "could not be reached" in response.content.decode()


def test_a_token_endpoint_that_is_down_after_the_provider_sent_the_user_back_is_said_so(
        configured, oidc_provider, provider_user):
    name = provider_user("judy")
    client = Client()
    url = authorize(client, oidc_provider, name)
    found = oidc.provider()
    # The provider went down between the redirect and the code exchange: its token endpoint no longer answers.
    oidc._providers[found.issuer] = (time.monotonic(),
                                     replace(found, token_endpoint=f"https://127.0.0.1:{free_port()}/o/token/"))

    response = client.get(callback_path(url), secure=True)

    assert response.status_code == 503 and "could not be reached" in response.content.decode()
    assert not get_user_model().objects.filter(username=name).exists()


def test_the_next_page_after_sign_in_stays_on_this_site(configured, oidc_provider, provider_user):
    name = provider_user("kim")

    response = sign_in(Client(), oidc_provider, name, next_path="https://evil.example.org/")

    assert response.status_code == 302 and response["Location"] == "/"


def test_deactivating_a_signed_in_provider_user_ends_their_session(configured, oidc_provider, provider_user):
    name = provider_user("leo")
    client = Client()
    sign_in(client, oidc_provider, name)
    assert client.get("/", secure=True).status_code == 200

    user = user_named(name)
    user.is_active = False
    user.save()

    assert client.get("/", secure=True).status_code == 302  # to the login page
