"""What the provider's answers must be before anyone is signed in: the discovery document, the ID token
(RS256 by a key of the provider's JWKS, issuer, audience, expiry, nonce), the groups claim; and how claims
map to users and groups. ID tokens here are signed with the real provider's key (and with others)."""
from __future__ import annotations

import json
import time
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from core import oidc
from core.models import OidcAccount, OidcGroup, UserAccessChange

ISSUER = "https://id.example.org/o"


@pytest.fixture
def keys(configured, oidc_provider):
    """The provider's signing key (from its directory) and the key id its JWKS publishes."""
    with urllib.request.urlopen(oidc_provider.discovery()["jwks_uri"], context=oidc_provider.ssl_context()) as answer:
        kid = json.load(answer)["keys"][0]["kid"]
    return oidc_provider.signing_key_file.read_bytes(), kid


def id_token(keys, provider, **changes) -> str:
    key, kid = keys
    now = int(time.time())
    claims = {"iss": provider.issuer, "sub": "42", "aud": "wvd-control-plane", "exp": now + 300, "iat": now,
              "nonce": "the-nonce"}
    headers = {"kid": kid}
    headers.update(changes.pop("headers", {}))
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, changes.pop("key", key),
                      algorithm="RS256", headers=headers)


def verify(token: str, configured, nonce: str = "the-nonce") -> dict:
    return oidc.verify_id_token(token, nonce, oidc.provider(), configured.OIDC)


def test_a_token_signed_by_the_provider_for_us_verifies(keys, oidc_provider, configured):
    assert verify(id_token(keys, oidc_provider, groups=["sales"]), configured)["groups"] == ["sales"]


@pytest.mark.parametrize(("change", "reason"), [
    ({"aud": "another-client"}, "Audience"),
    ({"iss": "https://evil.example.org/o"}, "issuer"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"nonce": "another-nonce"}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"sub": None}, "sub"),
    ({"aud": ["wvd-control-plane", "other"]}, "several clients"),
    ({"headers": {"kid": "unknown-key"}}, "do not hold"),
])
def test_a_token_that_is_not_for_this_sign_in_is_refused(keys, oidc_provider, configured, change, reason):
    with pytest.raises(oidc.InvalidAnswer, match=reason):
        verify(id_token(keys, oidc_provider, **change), configured)


def test_a_token_signed_by_another_key_is_refused(keys, oidc_provider, configured):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"iss": oidc_provider.issuer, "sub": "42", "aud": "wvd-control-plane",
                        "exp": int(time.time()) + 300, "iat": int(time.time()), "nonce": "the-nonce"},
                       other, algorithm="RS256", headers={"kid": keys[1]})

    with pytest.raises(oidc.InvalidAnswer, match="did not verify"):
        verify(token, configured)


def test_a_token_signed_with_the_client_secret_is_refused(oidc_provider, configured):
    token = jwt.encode({"iss": oidc_provider.issuer, "sub": "42", "aud": "wvd-control-plane", "nonce": "the-nonce",
                        "exp": int(time.time()) + 300, "iat": int(time.time())},
                       configured.OIDC["CLIENT_SECRET"], algorithm="HS256")

    with pytest.raises(oidc.InvalidAnswer, match="HS256"):
        verify(token, configured)


def test_an_unsigned_token_is_refused(oidc_provider, configured):
    token = jwt.encode({"iss": oidc_provider.issuer, "sub": "42", "aud": "wvd-control-plane", "nonce": "the-nonce",
                        "exp": int(time.time()) + 300, "iat": int(time.time())}, None, algorithm="none")

    with pytest.raises(oidc.InvalidAnswer):
        verify(token, configured)


# --- the discovery document --------------------------------------------------------------------------------

DOCUMENT = {
    "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize/", "token_endpoint": f"{ISSUER}/token/",
    "jwks_uri": f"{ISSUER}/jwks", "response_types_supported": ["code"],
    "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
}


def test_a_complete_discovery_document_gives_the_endpoints():
    found = oidc.parse_discovery(DOCUMENT, ISSUER + "/", "the url")

    assert (found.issuer, found.token_endpoint, found.userinfo_endpoint) == (ISSUER, f"{ISSUER}/token/", "")


@pytest.mark.parametrize(("change", "reason"), [
    ({"issuer": "https://other.example.org/o"}, "names the issuer"),
    ({"token_endpoint": "http://id.example.org/o/token/"}, "token_endpoint"),
    ({"jwks_uri": None}, "jwks_uri"),
    ({"id_token_signing_alg_values_supported": ["HS256"]}, "RS256"),
    ({"response_types_supported": ["id_token"]}, "code flow"),
    ({"code_challenge_methods_supported": ["plain"]}, "S256"),
])
def test_a_discovery_document_we_cannot_use_is_refused(change, reason):
    document = {key: value for key, value in {**DOCUMENT, **change}.items() if value is not None}

    with pytest.raises(oidc.ProviderUnavailable, match=reason):
        oidc.parse_discovery(document, ISSUER, "the url")


# --- claims to users and groups ------------------------------------------------------------------------------


def test_the_groups_claim_is_a_list_or_one_name_and_unusable_entries_are_left_out():
    assert oidc.group_names({"sub": "1", "groups": ["b", "a", "a", "", 7, "x" * 151]}, "groups") == ["a", "b"]
    assert oidc.group_names({"sub": "1", "roles": "sales"}, "roles") == ["sales"]
    assert oidc.group_names({"sub": "1"}, "groups") == []
    with pytest.raises(oidc.InvalidAnswer, match="not a list"):
        oidc.group_names({"sub": "1", "groups": {"sales": True}}, "groups")


@pytest.mark.django_db
def test_users_are_matched_by_issuer_and_subject_not_by_email():
    first = oidc.map_user(ISSUER, {"sub": "1", "email": "shared@example.org", "preferred_username": "ann"}, "groups")
    second = oidc.map_user(ISSUER, {"sub": "2", "email": "shared@example.org", "preferred_username": "ann"}, "groups")
    elsewhere = oidc.map_user("https://other.example.org", {"sub": "1", "preferred_username": "ann"}, "groups")
    again = oidc.map_user(ISSUER, {"sub": "1", "email": "moved@example.org", "preferred_username": "ann"}, "groups")

    assert len({first.pk, second.pk, elsewhere.pk}) == 3
    assert again.pk == first.pk and again.email == "moved@example.org"
    assert OidcAccount.objects.count() == 3


@pytest.mark.django_db
def test_a_local_account_with_the_same_name_is_never_taken_over(member):
    user = oidc.map_user(ISSUER, {"sub": "9", "preferred_username": "member", "email": member.email}, "groups")

    assert user.pk != member.pk
    assert user.username.startswith("member-") and len(user.username) == len("member-") + 8
    assert not OidcAccount.objects.filter(user=member).exists()


@pytest.mark.django_db
def test_membership_follows_the_claim_and_leaving_advances_the_access_change():
    user = oidc.map_user(ISSUER, {"sub": "1", "groups": ["sales", "support"]}, "groups")
    assert set(OidcGroup.objects.values_list("group__name", flat=True)) == {"sales", "support"}
    UserAccessChange.objects.all().delete()

    oidc.map_user(ISSUER, {"sub": "1", "groups": ["support"]}, "groups")

    assert list(user.groups.values_list("name", flat=True)) == ["support"]
    assert UserAccessChange.objects.get(user_id=user.pk).reason == "group membership changed"


@pytest.mark.django_db
def test_an_unchanged_membership_changes_no_access():
    oidc.map_user(ISSUER, {"sub": "1", "groups": ["sales"]}, "groups")
    UserAccessChange.objects.all().delete()

    oidc.map_user(ISSUER, {"sub": "1", "groups": ["sales"]}, "groups")

    assert not UserAccessChange.objects.exists()


@pytest.mark.django_db
def test_a_deactivated_user_is_refused_and_keeps_their_groups():
    user = oidc.map_user(ISSUER, {"sub": "1", "groups": ["sales"]}, "groups")
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)

    with pytest.raises(oidc.AccountDisabled):
        oidc.map_user(ISSUER, {"sub": "1", "groups": []}, "groups")

    assert list(user.groups.values_list("name", flat=True)) == ["sales"]


@pytest.mark.django_db
def test_the_management_command_makes_and_adopts_provider_groups():
    Group.objects.create(name="local")
    call_command("oidc_groups", "add", "sales")
    with pytest.raises(CommandError, match="--adopt"):
        call_command("oidc_groups", "add", "local")
    call_command("oidc_groups", "add", "local", "--adopt")

    assert set(OidcGroup.objects.values_list("group__name", flat=True)) == {"sales", "local"}
