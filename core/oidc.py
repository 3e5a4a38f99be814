"""OpenID Connect sign-in (docs/oidc.md): the login page's "Sign in with <provider>" button runs the
authorization code flow with PKCE, state and nonce against ``settings.OIDC`` (the ``WVD_OIDC_*`` variables,
core.environment.env_oidc), and the provider's groups claim sets the user's provider groups.

mozilla-django-oidc does the protocol's steps (the authorization request with state, nonce and the PKCE
challenge kept in the session; the token request); this module adds what it leaves to us:

- Discovery: the endpoints and keys come from ``<issuer>/.well-known/openid-configuration``, fetched with a
  bounded timeout when someone signs in, checked (the issuer it names is ours, https endpoints, RS256,
  the code flow) and kept for an hour; a provider that is down at start-up does not stop the control plane.
- The ID token is verified completely: RS256 signature by a key of the provider's JWKS (kept, fetched again
  for a key id it does not know), issuer, audience, expiry, nonce.
- Users are matched by issuer and subject (``OidcAccount``), never by e-mail; a new user's name is the
  provider's ``preferred_username`` unless a local account has it (then a suffix tells them apart).
- The groups claim sets membership of the provider's groups (``OidcGroup``) only; local and directory groups
  are never joined or left because of a claim. A membership change moves the user's access-change moment
  (core/signals.py), so connection tickets issued before a removal are refused.
- Every failure (provider down, an error answer, a stale or forged callback, a token that does not verify,
  a deactivated account) is a log line and a page that says what happened, never a traceback.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
import requests
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils import timezone
from django.views import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from core import metrics
from core.clientaddress import client_address
from core.models import OidcAccount, OidcGroup

log = logging.getLogger(__name__)

BACKEND = "core.oidc.OidcBackend"
CALLBACK_URL_NAME = "oidc-callback"
DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_SECONDS = 3600  # how long a discovery document and the provider's keys are kept
KEYS_REFETCH_SECONDS = 30  # an unknown key id fetches the keys again, at most this often
MAX_DOCUMENT_BYTES = 512 * 1024
ALGORITHM = "RS256"
CLOCK_LEEWAY_SECONDS = 60
STATE_SECONDS = 15 * 60  # a sign-in started longer ago than this is stale
MAX_GROUPS = 1000
GROUP_NAME_LENGTH = 150  # Django's Group.name
USERNAME_LENGTH = 150


# --- what the user is told -------------------------------------------------------------------------------


class OidcError(Exception):
    """A sign-in that did not happen: ``message`` is what the user reads, ``str()`` what the log says."""

    reason = "oidc_failed"  # wvd_signin_refusals_total{credential="oidc"}
    status = 400
    message = "Signing in with your organisation's account did not work. Start again from the sign-in page."


class ProviderUnavailable(OidcError):
    reason = "provider_unavailable"
    status = 503
    message = ("The identity provider that checks your account could not be reached, so you cannot sign in "
               "with it right now. Try again in a few minutes; if it keeps happening, tell your administrator.")


class ProviderRefused(OidcError):
    reason = "provider_refused"
    status = 403
    message = "The identity provider did not sign you in. If you think it should have, tell your administrator."


class InvalidAnswer(OidcError):
    reason = "invalid_answer"
    status = 403
    message = ("The identity provider's answer could not be verified, so you were not signed in. Start again "
               "from the sign-in page; if it keeps happening, tell your administrator.")


class StaleSignIn(OidcError):
    reason = "stale_sign_in"
    status = 400
    message = ("This sign-in was started in another window, has expired or was already used. Start again from "
               "the sign-in page.")


class AccountDisabled(OidcError):
    reason = "account_disabled"
    status = 403
    message = "Your account is disabled here. Ask your administrator to enable it."


# Standard error codes a provider may return to the callback (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6): only
# these are shown to the user; anything else is "an error".
PROVIDER_ERRORS = frozenset({
    "access_denied", "invalid_request", "unauthorized_client", "unsupported_response_type", "invalid_scope",
    "server_error", "temporarily_unavailable", "interaction_required", "login_required",
    "account_selection_required", "consent_required", "invalid_request_uri", "invalid_request_object",
    "request_not_supported", "request_uri_not_supported", "registration_not_supported",
})


# --- discovery and keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """What the provider's discovery document says, checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""


_lock = threading.Lock()
_providers: dict[str, tuple[float, Provider]] = {}
_keys: dict[str, tuple[float, dict]] = {}


def forget() -> None:
    """Drop the kept discovery documents and keys (the next sign-in fetches them again)."""
    with _lock:
        _providers.clear()
        _keys.clear()


def _verify(config: dict) -> str | bool:
    return config["CA_FILE"] or True


def _fetch_json(url: str, config: dict, what: str) -> dict:
    """GET a JSON object from the provider, bounded in time and size; ProviderUnavailable otherwise."""
    try:
        with requests.get(url, timeout=config["TIMEOUT"], verify=_verify(config), stream=True,
                          headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise ProviderUnavailable(f"{what} at {url} answered HTTP {response.status_code}")
            body = response.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"{what} at {url} could not be fetched: {_describe(exc)}") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ProviderUnavailable(f"{what} at {url} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise ProviderUnavailable(f"{what} at {url} is not JSON") from None
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"{what} at {url} is not a JSON object")
    return document


def _describe(exc: Exception) -> str:
    """One line for a requests failure: its kind and the innermost reason."""
    reason = exc
    for _ in range(10):  # urllib3 wraps the socket's error a few times
        if reason.__context__ is None:
            break
        reason = reason.__context__
    return f"{type(exc).__name__}: {reason}"[:300]


def _https_url(document: dict, name: str, url: str, required: bool = True) -> str:
    value = document.get(name, "")
    if not value and not required:
        return ""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise ProviderUnavailable(f"the discovery document at {url} has no https {name} ({value!r})")
    return value


def parse_discovery(document: dict, issuer: str, url: str) -> Provider:
    """Check a discovery document (OIDC Discovery §3, §4.3) for the configured issuer."""
    named = document.get("issuer")
    if not isinstance(named, str) or named.rstrip("/") != issuer.rstrip("/"):
        raise ProviderUnavailable(f"the discovery document at {url} names the issuer {named!r}, not {issuer!r} "
                                  "(WVD_OIDC_ISSUER must be the provider's issuer exactly)")
    algorithms = document.get("id_token_signing_alg_values_supported") or []
    if not isinstance(algorithms, list) or ALGORITHM not in algorithms:
        raise ProviderUnavailable(f"the provider at {url} does not sign ID tokens with {ALGORITHM} "
                                  f"(it offers {algorithms!r})")
    response_types = document.get("response_types_supported") or []
    if not isinstance(response_types, list) or "code" not in response_types:
        raise ProviderUnavailable(f"the provider at {url} does not offer the authorization code flow")
    methods = document.get("code_challenge_methods_supported")
    if methods is not None and (not isinstance(methods, list) or "S256" not in methods):
        raise ProviderUnavailable(f"the provider at {url} does not offer PKCE with S256 (it offers {methods!r})")
    return Provider(
        issuer=named,
        authorization_endpoint=_https_url(document, "authorization_endpoint", url),
        token_endpoint=_https_url(document, "token_endpoint", url),
        jwks_uri=_https_url(document, "jwks_uri", url),
        userinfo_endpoint=_https_url(document, "userinfo_endpoint", url, required=False),
    )


def provider(config: dict | None = None) -> Provider:
    """The configured provider's endpoints, from its discovery document (kept for DISCOVERY_SECONDS)."""
    config = config or settings.OIDC
    issuer = config["ISSUER"]
    with _lock:
        kept = _providers.get(issuer)
    if kept and time.monotonic() - kept[0] < DISCOVERY_SECONDS:
        return kept[1]
    url = issuer.rstrip("/") + DISCOVERY_PATH
    found = parse_discovery(_fetch_json(url, config, "the discovery document"), issuer, url)
    with _lock:
        _providers[issuer] = (time.monotonic(), found)
    log.info("OIDC provider %s discovered: authorization %s, token %s, keys %s", found.issuer,
             found.authorization_endpoint, found.token_endpoint, found.jwks_uri)
    return found


def signing_key(found: Provider, key_id: str | None, config: dict) -> jwt.PyJWK:
    """The provider's RS256 key with this id (the only one, when the token names none)."""
    for fresh in (False, True):
        with _lock:
            kept = _keys.get(found.jwks_uri)
        age = time.monotonic() - kept[0] if kept else None
        if kept is None or age >= DISCOVERY_SECONDS or (fresh and age >= KEYS_REFETCH_SECONDS):
            document = _fetch_json(found.jwks_uri, config, "the provider's keys")
            with _lock:
                _keys[found.jwks_uri] = kept = (time.monotonic(), document)
        elif fresh:
            break
        keys = [key for key in kept[1].get("keys") or [] if isinstance(key, dict) and key.get("kty") == "RSA"
                and key.get("use", "sig") == "sig" and key.get("alg", ALGORITHM) == ALGORITHM]
        matching = [key for key in keys if key.get("kid") == key_id] if key_id else keys
        if len(matching) == 1:
            try:
                return jwt.PyJWK(matching[0], algorithm=ALGORITHM)
            except jwt.PyJWKError as exc:
                raise InvalidAnswer(f"the provider's key {key_id!r} is unusable: {exc}") from None
    raise InvalidAnswer(f"the ID token names the key {key_id!r}, which the provider's keys at {found.jwks_uri} "
                        "do not hold (or hold more than once)")


# --- the backend: tokens, claims, users and groups -------------------------------------------------------


def _setting(attr: str, *default):
    """mozilla-django-oidc's settings, fixed here from settings.OIDC (not from OIDC_* names in settings.py)."""
    config = settings.OIDC or {}
    fixed = {
        "OIDC_RP_CLIENT_ID": config.get("CLIENT_ID"),
        "OIDC_RP_CLIENT_SECRET": config.get("CLIENT_SECRET"),
        "OIDC_RP_SCOPES": config.get("SCOPES"),
        "OIDC_RP_SIGN_ALGO": ALGORITHM,
        "OIDC_USE_NONCE": True,
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        "OIDC_VERIFY_SSL": config.get("CA_FILE") or True,
        "OIDC_TIMEOUT": config.get("TIMEOUT"),
        "OIDC_PROXY": None,
        "OIDC_TOKEN_USE_BASIC_AUTH": False,
        "OIDC_AUTHENTICATION_CALLBACK_URL": CALLBACK_URL_NAME,
        "OIDC_STORE_ACCESS_TOKEN": False,
        "OIDC_STORE_ID_TOKEN": False,
        "OIDC_ALLOW_UNSECURED_JWT": False,
    }
    if attr in fixed:
        return fixed[attr]
    return import_from_settings(attr, *default)


class OidcBackend(OIDCAuthenticationBackend):
    """Listed in AUTHENTICATION_BACKENDS when WVD_OIDC_ISSUER is set, so a session signed in through the
    provider finds its user again (ModelBackend's get_user: active users only). ``authenticate()`` never
    signs anyone in: only the callback does, through ``sign_in()``, so a password form cannot reach it."""

    get_settings = staticmethod(_setting)

    def __init__(self, *args, **kwargs) -> None:  # endpoints come from discovery at each sign-in
        self.UserModel = get_user_model()

    def authenticate(self, request, **credentials):
        return None

    def get_user(self, user_id):
        """Django's rule, not mozilla-django-oidc's: a deactivated user's session signs nobody in."""
        return ModelBackend.get_user(self, user_id)

    def sign_in(self, request: HttpRequest, code: str, nonce: str, code_verifier: str | None):
        """Exchange the code for tokens, verify the ID token and return the user it names (created or
        updated, groups set). Raises OidcError."""
        config = settings.OIDC
        found = provider(config)
        self.request = request
        self.OIDC_OP_TOKEN_ENDPOINT = found.token_endpoint
        self.OIDC_RP_CLIENT_ID = config["CLIENT_ID"]
        self.OIDC_RP_CLIENT_SECRET = config["CLIENT_SECRET"]
        payload = {
            "client_id": config["CLIENT_ID"],
            "client_secret": config["CLIENT_SECRET"],
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": request.build_absolute_uri(resolve_url(CALLBACK_URL_NAME)),
        }
        if code_verifier:
            payload["code_verifier"] = code_verifier
        try:
            tokens = self.get_token(payload)
        except requests.HTTPError as exc:
            response = exc.response
            status = response.status_code if response is not None else 0
            if 400 <= status < 500:
                raise ProviderRefused(f"the token endpoint refused the code: HTTP {status} "
                                      f"{_error_code(response)}") from None
            raise ProviderUnavailable(f"the token endpoint answered HTTP {status}") from None
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"the token endpoint could not be reached: {_describe(exc)}") from None
        except ValueError:
            raise InvalidAnswer("the token endpoint's answer is not JSON") from None
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(id_token, str):
            raise InvalidAnswer("the token endpoint's answer has no ID token")
        claims = verify_id_token(id_token, nonce, found, config)
        claims = {**self.userinfo(tokens.get("access_token"), claims, found, config), **claims}
        return map_user(found.issuer, claims, config["GROUPS_CLAIM"])

    def userinfo(self, access_token, claims: dict, found: Provider, config: dict) -> dict:
        """The userinfo endpoint's claims, when the provider has one and the ID token lacks the groups
        claim (some providers put groups there only). Its ``sub`` must be the ID token's (OIDC Core §5.3.2)."""
        if not found.userinfo_endpoint or not isinstance(access_token, str) or config["GROUPS_CLAIM"] in claims:
            return {}
        try:
            response = requests.get(found.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"},
                                    timeout=config["TIMEOUT"], verify=_verify(config))
            response.raise_for_status()
            info = response.json()
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"the userinfo endpoint could not be read: {_describe(exc)}") from None
        except ValueError:
            raise InvalidAnswer("the userinfo endpoint's answer is not JSON (signed userinfo is not supported)") \
                from None
        if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
            raise InvalidAnswer("the userinfo endpoint names another subject than the ID token")
        return info


def _error_code(response) -> str:
    try:
        error = response.json().get("error", "")
    except (ValueError, AttributeError):
        return ""
    return error if error in PROVIDER_ERRORS or error in ("invalid_grant", "invalid_client") else "(other error)"


def verify_id_token(token: str, nonce: str, found: Provider, config: dict) -> dict:
    """The ID token's claims, once its RS256 signature (by the provider's key), issuer, audience, expiry,
    issue time and nonce are checked (OIDC Core §3.1.3.7); InvalidAnswer otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidAnswer(f"the ID token is not a JWT: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidAnswer(f"the ID token is signed with {header.get('alg')!r}, not {ALGORITHM}")
    key = signing_key(found, header.get("kid"), config)
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=config["CLIENT_ID"], issuer=found.issuer,
                            leeway=CLOCK_LEEWAY_SECONDS, options={"require": ["iss", "sub", "aud", "exp", "iat"]})
    except jwt.PyJWTError as exc:
        raise InvalidAnswer(f"the ID token did not verify: {exc}") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != config["CLIENT_ID"]:
        raise InvalidAnswer(f"the ID token is for several clients and not issued to this one (azp {claims.get('azp')!r})")
    if not nonce or claims.get("nonce") != nonce:
        raise InvalidAnswer("the ID token's nonce is not the one this sign-in sent")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise InvalidAnswer(f"the ID token's subject is not a string of 1 to 255 characters ({subject!r})")
    return claims


def group_names(claims: dict, claim: str) -> list[str]:
    """The group names the claim carries: a list of strings (or one string). Entries that cannot be a group's
    name (empty, too long) are left out with a log line; a claim of another type refuses the sign-in."""
    value = claims.get(claim)
    if value is None:
        log.info("the ID token of %s has no %r claim: the user is in none of the provider's groups",
                 claims.get("sub"), claim)
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_GROUPS:
        raise InvalidAnswer(f"the {claim!r} claim is not a list of at most {MAX_GROUPS} group names")
    names = []
    for item in value:
        if isinstance(item, str) and 0 < len(item.strip()) <= GROUP_NAME_LENGTH:
            names.append(item.strip())
        else:
            log.warning("the %r claim of %s has an entry that cannot be a group name: %r", claim,
                        claims.get("sub"), item if not isinstance(item, str) else item[:40])
    return sorted(set(names))


def username_for(claims: dict, issuer: str) -> str:
    """A new user's name: the provider's ``preferred_username`` (else the e-mail, else the subject), with a
    suffix from the issuer and subject when a local account (or another provider user) already has it."""
    user_model = get_user_model()
    base = next((value.strip() for value in (claims.get("preferred_username"), claims.get("email"), claims["sub"])
                 if isinstance(value, str) and value.strip()), claims["sub"])[:USERNAME_LENGTH]
    digest = hashlib.sha256(f"{issuer}\n{claims['sub']}".encode()).hexdigest()
    for candidate in (base, f"{base[:USERNAME_LENGTH - 9]}-{digest[:8]}", f"oidc-{digest[:40]}"):
        if not user_model.objects.filter(username__iexact=candidate).exists():
            return candidate
    raise InvalidAnswer(f"no free user name for {claims['sub']!r} (tried {base!r})")


def _profile(claims: dict) -> dict:
    user_model = get_user_model()
    fields = {"email": "email", "first_name": "given_name", "last_name": "family_name"}
    profile = {}
    for field, claim in fields.items():
        value = claims.get(claim)
        if isinstance(value, str):
            profile[field] = value.strip()[: user_model._meta.get_field(field).max_length]
    return profile


def map_user(issuer: str, claims: dict, groups_claim: str):
    """The user the provider's claims name, created at the first sign-in, with profile and provider groups
    updated. Raises AccountDisabled for a deactivated user (who keeps their groups until an admin acts)."""
    user_model = get_user_model()
    subject = claims["sub"]
    names = group_names(claims, groups_claim)
    profile = _profile(claims)
    for attempt in range(2):
        try:
            with transaction.atomic():
                account = (OidcAccount.objects.select_for_update().select_related("user")
                           .filter(issuer=issuer, subject=subject).first())
                if account is None:
                    user = user_model(username=username_for(claims, issuer), **profile)
                    user.set_unusable_password()  # the provider holds the password
                    user.save()
                    account = OidcAccount.objects.create(user=user, issuer=issuer, subject=subject)
                    log.info("OIDC user %s created for %s at %s", user.get_username(), subject, issuer)
                user = account.user
                if not user.is_active:
                    raise AccountDisabled(f"OIDC user {user.get_username()} ({subject}) is deactivated here")
                changed = [field for field, value in profile.items() if getattr(user, field) != value]
                for field in changed:
                    setattr(user, field, profile[field])
                if changed:
                    user.save(update_fields=changed)
                set_provider_groups(user, names)
                account.signed_in_at = timezone.now()
                account.save(update_fields=["signed_in_at"])
                return user
        except IntegrityError:
            if attempt:  # the first sign-in of the same subject twice at once: the other one made the user
                raise
    raise AssertionError("unreachable")


def set_provider_groups(user, names: list[str]) -> None:
    """Make the user's provider groups exactly ``names``: provider groups are created as needed; groups
    without the provider's mark are left alone (never joined, never left)."""
    marked = set(OidcGroup.objects.filter(group__name__in=names).values_list("group__name", flat=True))
    wanted = []
    for name in names:
        group, created = Group.objects.get_or_create(name=name)
        if created:
            OidcGroup.objects.create(group=group)
            log.info("OIDC group %s created", name)
        elif name not in marked:
            log.warning("OIDC user %s not put in group %s: it is a local group, not one of the provider's "
                        "(manage.py oidc_groups adopt, docs/oidc.md)", user.get_username(), name)
            continue
        wanted.append(group)
    current = set(user.groups.filter(oidc_origin__isnull=False))
    leaving = current - set(wanted)
    joining = set(wanted) - current
    if leaving:
        user.groups.remove(*leaving)  # core/signals.py: the access change refuses tickets issued before
    if joining:
        user.groups.add(*joining)
    if leaving or joining:
        log.info("OIDC user %s: joined %s, left %s", user.get_username(),
                 sorted(group.name for group in joining) or "none", sorted(group.name for group in leaving) or "none")


# --- the views -------------------------------------------------------------------------------------------


def error_page(request: HttpRequest, error: OidcError) -> HttpResponse:
    log.warning("OIDC sign-in from %s failed (%s): %s", client_address(request),
                type(error).__name__, error)
    metrics.SIGNIN_REFUSALS.labels(reason=error.reason, credential="oidc").inc()
    context = {"message": error.message, "provider_name": (settings.OIDC or {}).get("PROVIDER_NAME", "")}
    return render(request, "registration/oidc_error.html", context, status=error.status)


class StartView(OIDCAuthenticationRequestView):
    """GET /accounts/oidc/start/?next=...: to the provider's authorization endpoint, with state, nonce and
    the PKCE challenge remembered in the session (mozilla-django-oidc)."""

    get_settings = staticmethod(_setting)

    def __init__(self, *args, **kwargs) -> None:  # the endpoint comes from discovery at each request
        View.__init__(self, *args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider().authorization_endpoint
        except OidcError as error:
            return error_page(request, error)
        self.OIDC_RP_CLIENT_ID = settings.OIDC["CLIENT_ID"]
        return super().get(request)


class CallbackView(View):
    """GET /accounts/oidc/callback/?code=...&state=...: the provider sends the browser back here. The state
    must be one this session started (and is used up), then the code is exchanged and the user signed in."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            user = self.sign_in(request)
        except OidcError as error:
            return error_page(request, error)
        auth.login(request, user, backend=BACKEND)
        log.info("%s signed in through the OIDC provider from %s", user.get_username(),
                 client_address(request))
        next_url = request.session.pop("oidc_login_next", None)
        return HttpResponseRedirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))

    def sign_in(self, request: HttpRequest):
        states = request.session.get("oidc_states")
        state = request.GET.get("state", "")
        started = states.pop(state, None) if isinstance(states, dict) and state else None
        if started is not None:
            request.session.modified = True  # used up: a second callback with it is stale
        if started is None:
            raise StaleSignIn(f"the callback's state {state[:12]!r}... is not one this session started")
        error = request.GET.get("error")
        if error:
            shown = error if error in PROVIDER_ERRORS else "(other error)"
            raise ProviderRefused(f"the provider answered the authorization request with {shown}")
        if time.time() - started.get("added_on", 0) > STATE_SECONDS:
            raise StaleSignIn(f"the sign-in was started more than {STATE_SECONDS // 60} minutes ago")
        code = request.GET.get("code", "")
        if not code:
            raise InvalidAnswer("the callback has neither a code nor an error")
        return OidcBackend().sign_in(request, code, started.get("nonce") or "", started.get("code_verifier"))
