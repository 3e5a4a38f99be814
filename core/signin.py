"""Client sign-in: ``POST /api/v1/auth/token/`` trades a user name and password for a short-lived
bearer token that every feed endpoint accepts (step 1 of the connection sequence).

Failed attempts are counted per user name and per client address in the shared cache (Redis when
configured, so every process sees the same counts), for SIGNIN_FAILURE_WINDOW seconds from the
first failure. Over either limit the answer is 429 with Retry-After until the window ends, even for the
right password: otherwise a guesser would learn the password from the one answer that differs. The
browser's login page counts in the same counters.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.models import ApiToken

log = logging.getLogger(__name__)

TOKEN_DESCRIPTION = "sign-in"
# Expired sign-in tokens are deleted at the user's next sign-in, after this grace period (so the
# admin can still see recent ones): one row per sign-in must not pile up forever.
EXPIRED_TOKEN_RETENTION = timedelta(days=1)
MAX_USERNAME_LENGTH = 150
MAX_PASSWORD_LENGTH = 1024


# --- rate limiting ----------------------------------------------------------------------------
# Each counter's window starts at its first failure and lasts SIGNIN_FAILURE_WINDOW seconds; a
# second key remembers when it started, so the refusal can say how long to wait (Retry-After).


def _keys(username: str, address: str) -> dict[str, str]:
    # Hashed: user names are arbitrary text, cache keys must not be.
    user = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
    return {"user": f"signin:failures:user:{user}", "address": f"signin:failures:address:{address}"}


def _limits() -> dict[str, int]:
    return {"user": settings.SIGNIN_MAX_FAILURES_PER_USER, "address": settings.SIGNIN_MAX_FAILURES_PER_ADDRESS}


def signin_retry_after(username: str, address: str) -> int | None:
    """Seconds to wait when ``username`` or ``address`` has failed too often, else None."""
    keys = _keys(username, address)
    values = cache.get_many([name for key in keys.values() for name in (key, key + ":since")])
    limits, window, now = _limits(), settings.SIGNIN_FAILURE_WINDOW, time.time()
    waits = {}
    for scope, key in keys.items():
        if (values.get(key) or 0) >= limits[scope]:
            since = values.get(key + ":since", now)
            waits[scope] = max(1, math.ceil(since + window - now))
    if not waits:
        return None
    log.warning("sign-in as %r from %s refused: too many failures per %s", username[:MAX_USERNAME_LENGTH],
                address, " and per ".join(waits))
    return max(waits.values())


def record_signin_failure(username: str, address: str) -> None:
    """Count one failed sign-in against the user name and the address."""
    window = settings.SIGNIN_FAILURE_WINDOW
    for key in _keys(username, address).values():
        # add() only starts a window that is not running; incr() is atomic in Redis.
        cache.add(key + ":since", time.time(), window)
        cache.add(key, 0, window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr: a new window
            cache.set(key, 1, window)


def clear_signin_failures(username: str) -> None:
    """After a successful sign-in the user's own counter starts again (the address's does not)."""
    key = _keys(username, "")["user"]
    cache.delete_many([key, key + ":since"])


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


# --- the endpoint ----------------------------------------------------------------------------


class SignInSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=MAX_USERNAME_LENGTH)
    password = serializers.CharField(max_length=MAX_PASSWORD_LENGTH, trim_whitespace=False,
                                     style={"input_type": "password"})


class SignedInSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`; shown only this once.")
    token_type = serializers.CharField(help_text="Always `Bearer`.")
    expires_at = serializers.DateTimeField()
    expires_in = serializers.IntegerField(help_text="Seconds until the token expires.")
    username = serializers.CharField()


class SignInError(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(help_text="invalid, invalid_credentials or rate_limited.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="For `invalid`: the messages per field.")


class TokenSignInView(APIView):
    """No authentication classes: the user name and password are the credential, and the view
    answers for itself (a stale session cookie must not trigger a CSRF refusal here)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        request=SignInSerializer,
        responses={
            201: SignedInSerializer,
            400: OpenApiResponse(SignInError, description="Missing or malformed user name or password"),
            401: OpenApiResponse(SignInError, description="Wrong user name or password, or a disabled account"),
            429: OpenApiResponse(SignInError, description="Too many failed attempts for this user or from this "
                                                          "address; see Retry-After"),
        },
        summary="Sign in and get a bearer token",
        description="Exchanges a user name and password for a bearer token valid for API_TOKEN_DEFAULT_LIFETIME "
                    "(one hour by default), usable on the feed endpoints.",
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        address = client_address(request)
        serializer = SignInSerializer(data=request.data)
        if not serializer.is_valid():
            log.info("sign-in from %s refused: %s", address, serializer.errors)
            return Response({"detail": "Give a user name and a password.", "code": "invalid",
                             "errors": serializer.errors}, status=status.HTTP_400_BAD_REQUEST)
        username, password = serializer.validated_data["username"], serializer.validated_data["password"]

        retry_after = signin_retry_after(username, address)
        if retry_after is not None:
            return Response(
                {"detail": f"Too many failed sign-ins; try again in {retry_after} seconds.", "code": "rate_limited"},
                status=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(retry_after)},
            )
        user = authenticate(request._request, username=username, password=password)
        if user is None:  # also a disabled account: ModelBackend refuses inactive users
            record_signin_failure(username, address)
            log.info("sign-in as %r from %s failed: wrong user name or password", username, address)
            return Response({"detail": "Wrong user name or password.", "code": "invalid_credentials"},
                            status=status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": 'Bearer realm="api"'})
        clear_signin_failures(username)

        lifetime = settings.API_TOKEN_DEFAULT_LIFETIME
        token, key = ApiToken.issue(user, description=TOKEN_DESCRIPTION, lifetime=lifetime)
        ApiToken.objects.filter(user=user, description=TOKEN_DESCRIPTION,
                                expires_at__lt=timezone.now() - EXPIRED_TOKEN_RETENTION).delete()
        log.info("%s signed in from %s (token %s…, valid until %s)", user.get_username(), address, token.prefix,
                 token.expires_at.isoformat())
        body = {
            "token": key,
            "token_type": "Bearer",
            "expires_at": token.expires_at,
            "expires_in": int(lifetime.total_seconds()),
            "username": user.get_username(),
        }
        return Response(SignedInSerializer(body).data, status=status.HTTP_201_CREATED,
                        headers={"Cache-Control": "no-store"})
