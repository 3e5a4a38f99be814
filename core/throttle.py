"""The sign-in throttle: one mechanism for every place a secret is tried (django-axes, cache handler).

Failures are counted per *name and client address together*: a user name on the admin login, the user
page's login (the portal's too) and ``POST /api/v1/auth/token/``, or a registration token's hash on
``POST /api/v1/hostagent/register/``. After AXES_FAILURE_LIMIT failures that pair is refused for
AXES_COOLOFF_TIME, counted from its last failure (an attempt while refused is one more failure and starts
the wait again), so a client that keeps guessing stays locked out while the same user from any other
address signs in as usual: nobody can lock someone else out. A success clears the pair's count.

The counts live in the ``signin`` cache (Redis when configured, shared by every process), one key per
pair that expires with its cool-off: no database write per unauthenticated request.

Django's authenticate() consults the throttle through axes' backend (AUTHENTICATION_BACKENDS); a locked
pair gets ``refusal()``: 429 with Retry-After, as JSON for the APIs and as the sign-in form with "try again
in N minutes" for the forms. Our views answer with it themselves; ``SignInThrottleMiddleware`` answers
for Django's admin login. Registration tokens are not passwords, so registration calls ``check()`` and
``record_failure()`` directly.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import math

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from core import metrics
from core.clientaddress import client_address
from core.directory import directory_unavailable

log = logging.getLogger(__name__)

USERNAME_FIELD = "username"
MAX_LOGGED_NAME = 150
# What the throttle knows of a registration token: a hash, never the token (nor a usable part of it).
TOKEN_IDENTITY_PREFIX = "registration-token:"


class SignInThrottleBackend(AxesStandaloneBackend):
    """Axes' backend: refuses a locked-out pair before any password is checked. A call without a request
    (the test client's login(), a shell) has no client address to throttle, and passes."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class SignInThrottleMiddleware:
    """Turns a sign-in the throttle refused into ``refusal()``, the only way to answer for Django's admin
    login. In place of axes' own middleware, whose async path (``serve`` runs the ASGI stack) drops the
    view's response, and with it the form to show again."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._answer_async(request)
        response = self.get_response(request)
        return refusal(request, response) if locked_out(request) else response

    async def _answer_async(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        if locked_out(request):
            response = await sync_to_async(refusal)(request, response)  # renders a template: sync code
        return response


# --- what axes calls (settings.AXES_*) ---------------------------------------------------------


def throttle_name(request: HttpRequest, credentials: dict | None) -> str:
    """AXES_USERNAME_CALLABLE: the name half of the key, normalised (case and surrounding space do not
    make a new name) and hashed to a fixed length, so "name" + "address" can never read as another pair."""
    name = (credentials or {}).get(USERNAME_FIELD)
    if name is None:
        name = request.POST.get(USERNAME_FIELD, "")
    digest = hashlib.sha256(str(name).strip().casefold().encode("utf-8", "replace")).hexdigest()
    return f"name:{digest[:32]}"


def throttle_address(request: HttpRequest) -> str:
    """AXES_CLIENT_IP_CALLABLE: the address half of the key. An IPv6 client counts by its /64, the
    smallest network a site is given: otherwise one machine could try from a fresh address each time."""
    address = client_address(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


# --- the answer to a locked-out pair ----------------------------------------------------------------


def refusal(request: HttpRequest, original_response: HttpResponse | None = None,
            credentials: dict | None = None) -> HttpResponse:
    """429 with Retry-After: the sign-in form again with the wait when the refused answer was a form, else
    JSON. Logged once, however many times it is asked for."""
    if getattr(original_response, "is_signin_refusal", False):
        return original_response  # the view answered for itself; the middleware passes it on
    request = getattr(request, "_request", request)  # DRF's wrapper: axes marked the HttpRequest inside
    wait = retry_after(request)
    minutes = max(1, math.ceil(wait / 60))
    credentials = credentials or getattr(request, "axes_credentials", None) or {}
    name = str(credentials.get(USERNAME_FIELD) or "")[:MAX_LOGGED_NAME]
    who = name if name.startswith(TOKEN_IDENTITY_PREFIX) else f"sign-in as {name!r}"
    log.warning("%s from %s refused at %s: too many failed attempts; locked out for %d s",
                who, client_address(request), request.path, wait)
    metrics.SIGNIN_REFUSALS.labels(reason=metrics.THROTTLED, credential=_credential_kind(name)).inc()
    context = getattr(original_response, "context_data", None) or {}
    form = context.get("form")
    if isinstance(original_response, TemplateResponse) and form is not None:
        # The same form, unbound: the posted one carries a password error we did not check for.
        unbound = type(form)(request, initial={USERNAME_FIELD: name})
        response = TemplateResponse(request, original_response.template_name,
                                    {**context, "form": unbound, "retry_minutes": minutes}, status=429)
        response.render()
    else:
        noun = "sign-ins" if not name.startswith(TOKEN_IDENTITY_PREFIX) else "registration attempts"
        response = JsonResponse({"detail": f"Too many failed {noun}; try again in {minutes} minute"
                                           f"{'s' if minutes != 1 else ''}.", "code": "rate_limited"},
                                status=429)
    response["Retry-After"] = str(wait)
    response.is_signin_refusal = True
    return response


def retry_after(request: HttpRequest) -> int:
    """Seconds until a locked-out pair may try again: the whole cool-off, since the refused attempt was
    itself counted and started it again."""
    cool_off = get_cool_off(request)
    return max(1, int(cool_off.total_seconds())) if cool_off else 1


def record_success(request, user) -> None:
    """A sign-in that does not go through login() (a bearer token) clears its pair's failures as login()
    does."""
    AxesProxyHandler.user_logged_in(sender=__name__, request=getattr(request, "_request", request), user=user)


def locked_out(request: HttpRequest) -> bool:
    """Whether the throttle refused this request's sign-in (after authenticate() or record_failure())."""
    return bool(getattr(getattr(request, "_request", request), "axes_locked_out", False))


# --- secrets that are not passwords ----------------------------------------------------------------


def token_credentials(token: str) -> dict:
    """The throttle's credentials for a presented token: its hash stands in for the user name."""
    digest = hashlib.sha256(token.strip().encode("utf-8", "replace")).hexdigest()
    return {USERNAME_FIELD: f"{TOKEN_IDENTITY_PREFIX}{digest[:16]}"}


def check(request, credentials: dict) -> HttpResponse | None:
    """Before checking a token: the refusal when this pair is locked out, else None. As for passwords,
    an attempt while locked out counts as a failure."""
    request = getattr(request, "_request", request)
    if AxesProxyHandler.is_allowed(request, credentials):
        return None
    return record_failure(request, credentials) or refusal(request, credentials=credentials)


def record_failure(request, credentials: dict) -> HttpResponse | None:
    """Count a failed token; the refusal when that failure reached the limit, else None."""
    request = getattr(request, "_request", request)
    AxesProxyHandler.user_login_failed(sender=__name__, credentials=credentials, request=request)
    if locked_out(request):
        return refusal(request, credentials=credentials)
    name = str(credentials.get(USERNAME_FIELD) or "")
    metrics.SIGNIN_REFUSALS.labels(reason=metrics.WRONG_CREDENTIALS, credential=_credential_kind(name)).inc()
    return None


# --- one log line per failed sign-in, on every surface ---------------------------------------------


def log_failed_sign_in(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    """Receives user_login_failed (connected in CoreConfig.ready). Axes, listed before core in
    INSTALLED_APPS, has counted the failure by now: one that reached the limit is logged by refusal()
    instead, as the 429 it becomes."""
    if request is None or locked_out(request):
        return
    name = str(credentials.get(USERNAME_FIELD) or "")[:MAX_LOGGED_NAME]
    if directory_unavailable(request):
        why, reason = "the directory did not answer", metrics.DIRECTORY_UNAVAILABLE
    else:
        why, reason = "wrong user name or password", metrics.WRONG_CREDENTIALS
    log.info("sign-in as %r from %s failed at %s: %s", name, client_address(request), request.path, why)
    metrics.SIGNIN_REFUSALS.labels(reason=reason, credential=_credential_kind(name)).inc()


def _credential_kind(name: str) -> str:
    """The metrics' credential label: a token's stand-in name, or a user's."""
    return "token" if name.startswith(TOKEN_IDENTITY_PREFIX) else "password"
