"""Client sign-in: ``POST /api/v1/auth/token/`` trades a user name and password for a short-lived
bearer token that every feed endpoint accepts (step 1 of the connection sequence).

Failed attempts count in the sign-in throttle (core.throttle) per user name and client address, as on
every other sign-in surface: a pair over the limit gets 429 with Retry-After, even for the right password
(otherwise a guesser would learn the password from the one answer that differs), while the same user
from another address signs in as usual.

With a directory configured (core/directory.py) the directory's password signs in here and on every form
(``SignInForm``, ``AdminSignInForm``); a directory that did not answer is 503 ``directory_unavailable``
(the forms: ``DIRECTORY_UNAVAILABLE``), never "wrong password".
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import throttle
from core.clientaddress import client_address
from core.directory import DIRECTORY_UNAVAILABLE, directory_unavailable
from core.models import ApiToken

log = logging.getLogger(__name__)

TOKEN_DESCRIPTION = "sign-in"
# Expired sign-in tokens are deleted at the user's next sign-in, after this grace period (so the
# admin can still see recent ones): one row per sign-in must not pile up forever.
EXPIRED_TOKEN_RETENTION = timedelta(days=1)
MAX_USERNAME_LENGTH = 150
MAX_PASSWORD_LENGTH = 1024


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
    code = serializers.CharField(help_text="invalid, invalid_credentials, rate_limited or directory_unavailable.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="For `invalid`: the messages per field.")


class DirectoryAwareSignIn:
    """Django's sign-in forms, telling a directory that could not answer (core/directory.py) from a wrong
    password."""

    def get_invalid_login_error(self) -> ValidationError:
        if directory_unavailable(self.request):
            return ValidationError(self.error_messages["directory_unavailable"], code="directory_unavailable")
        return super().get_invalid_login_error()

    @property
    def directory_unavailable(self) -> bool:
        return self.has_error(NON_FIELD_ERRORS, "directory_unavailable")


class SignInForm(DirectoryAwareSignIn, AuthenticationForm):
    """The user page's login (the portal's too)."""

    error_messages = {**AuthenticationForm.error_messages, "directory_unavailable": DIRECTORY_UNAVAILABLE}


class AdminSignInForm(DirectoryAwareSignIn, AdminAuthenticationForm):
    """The admin's login (staff only, as Django's)."""

    error_messages = {**AdminAuthenticationForm.error_messages, "directory_unavailable": DIRECTORY_UNAVAILABLE}


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
            429: OpenApiResponse(SignInError, description="Too many failed attempts for this user name from this "
                                                          "address; see Retry-After"),
            503: OpenApiResponse(SignInError, description="The directory that checks the password did not answer "
                                                          "(directory sign-in, WVD_LDAP_URI)"),
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

        # The throttle's backend refuses a locked-out pair here before the password is checked.
        user = authenticate(request._request, username=username, password=password)
        if user is None:  # also a disabled account: ModelBackend refuses inactive users
            if throttle.locked_out(request):
                return throttle.refusal(request._request, credentials={"username": username})
            if directory_unavailable(request):
                return Response({"detail": DIRECTORY_UNAVAILABLE, "code": "directory_unavailable"},
                                status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "60"})
            return Response({"detail": "Wrong user name or password.", "code": "invalid_credentials"},
                            status=status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": 'Bearer realm="api"'})
        throttle.record_success(request, user)

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
