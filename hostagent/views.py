"""The host agent's HTTP endpoints under /api/v1/hostagent/.

- ``register/``: a session host joins its pool with the registration token (no user authentication).
- ``user-sessions/<id>/{logoff,disconnect,message}/`` and ``session-hosts/<id>/renew-certificate/``:
  actions that reach a host through its channel, for holders of a role granting them on the session (or
  host) at its host pool (docs/roles.md): a session the caller may not read is a 404, one they may read
  but not act on a 403; the
  HTTP status follows the agent's answer (200 ok, 409 failed or unsupported, 503 offline, 504 timeout).
"""
from __future__ import annotations

import logging
from dataclasses import asdict

from celery.exceptions import TimeoutError as CeleryTimeout
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker.hostbus import CommandResult
from broker.models import HostPool, SessionHost, UserSession
from core import ca, throttle
from core.clientaddress import client_address
from core.hashing import hash_secret
from core.models import Certificate
from core.authorization import grants_for_request
from core.permissions import HasRole
from hostagent import commands, tasks
from hostagent.health import heartbeat_interval
from hostagent.registration import HOST_NAME, MAX_HOST_NAME

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024
# The agent waits for its certificate; a worker that does not answer in this time is not coming.
TASK_TIMEOUT = 30.0


class RegistrationSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200, trim_whitespace=True)
    name = serializers.RegexField(HOST_NAME, max_length=MAX_HOST_NAME,
                                  error_messages={"invalid": "Use a host name: letters, digits, '-' and '.'."})
    csr = serializers.CharField(max_length=16 * 1024, trim_whitespace=False,
                                help_text="PEM certificate signing request whose common name is the host name.")


class RegisteredSerializer(serializers.Serializer):
    session_host_id = serializers.IntegerField()
    name = serializers.CharField()
    host_pool = serializers.CharField()
    certificate = serializers.CharField(help_text="The host-agent certificate, PEM.")
    ca_certificate = serializers.CharField(help_text="The CA certificate to trust, PEM.")
    heartbeat_interval = serializers.IntegerField()
    channel_path = serializers.CharField()


class RegisterView(APIView):
    """No user authentication: the registration token is the credential. Failures count in the sign-in
    throttle (core.throttle) per presented token (its hash) and client address: a client that keeps failing
    with one token is refused (429) while hosts elsewhere register with it as usual."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]

    @extend_schema(
        request=RegistrationSerializer,
        responses={201: RegisteredSerializer, 400: OpenApiResponse(description="Bad input or CSR refused"),
                   401: OpenApiResponse(description="Token wrong, revoked or expired"),
                   409: OpenApiResponse(description="The name belongs to another pool (name_taken), or to a host "
                                        "whose agent holds a valid certificate and that no admin marked for "
                                        "replacement (host_in_use)"),
                   429: OpenApiResponse(description="Too many failed attempts with this token from this address; "
                                                    "see Retry-After")},
        summary="Register a session host",
    )
    def post(self, request: Request) -> Response:
        address = client_address(request)
        try:
            if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
                return self.refuse(request, None, "too_large", "The request is too large.", 413)
        except ValueError:
            return self.refuse(request, None, "bad_request", "The Content-Length header is not a number.", 400)
        # Counted per presented token (hashed) and address, as passwords are per user name and address.
        presented = request.data.get("token") if isinstance(request.data, dict) else None
        credentials = throttle.token_credentials(presented if isinstance(presented, str) else "")
        refused = throttle.check(request, credentials)
        if refused is not None:
            return refused
        serializer = RegistrationSerializer(data=request.data)
        if not serializer.is_valid():
            if refused := throttle.record_failure(request, credentials):
                return refused
            log.info("registration from %s refused: %s", address, serializer.errors)
            return Response(serializer.errors, status=status.HTTP_400_BAD_REQUEST)
        token, name, csr = (serializer.validated_data[key] for key in ("token", "name", "csr"))

        pool = HostPool.for_registration_token(token)
        if pool is None:
            if HostPool.objects.filter(registration_token_hash=hash_secret(token),
                                       registration_token_expires_at__lte=timezone.now()).exists():
                return self.refuse(request, credentials, "token_expired", "The registration token has expired; ask an "
                                   "administrator for a new one.", 401)
            return self.refuse(request, credentials, "token_invalid",
                               "The registration token is not valid (wrong or revoked).", 401)

        try:
            outcome = tasks.register_session_host.delay(pool.pk, name, csr).get(timeout=TASK_TIMEOUT)
        except CeleryTimeout:
            log.error("registration of %s: no worker answered within %s s", name, TASK_TIMEOUT)
            return Response({"detail": "The certificate could not be issued in time; try again later.",
                             "code": "unavailable"}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        if "refused" in outcome:
            return self.refuse(request, credentials, outcome["refused"], outcome["detail"], outcome["http_status"])

        certificate = Certificate.objects.get(pk=outcome["certificate_id"])
        body = {
            "session_host_id": outcome["session_host_id"],
            "name": name,
            "host_pool": pool.name,
            "certificate": certificate.pem,
            "ca_certificate": ca.ca_certificate_pem().decode(),
            "heartbeat_interval": heartbeat_interval(),
            "channel_path": "/ws/hostagent/",
        }
        return Response(RegisteredSerializer(body).data, status=status.HTTP_201_CREATED)

    def refuse(self, request: Request, credentials: dict | None, code: str, detail: str, http_status: int) -> Response:
        """Count a refusal against the token and address (a server-side failure is not theirs) and log it;
        the one that reaches the limit is answered, and logged, as the throttle's 429."""
        if http_status < 500 and credentials is not None:
            if refused := throttle.record_failure(request, credentials):
                return refused
        log.info("registration from %s refused (%s): %s", client_address(request), code, detail)
        headers = {"WWW-Authenticate": 'RegistrationToken realm="hostagent"'} if http_status == 401 else None
        return Response({"detail": detail, "code": code}, status=http_status, headers=headers)


# --- Actions that reach a host ------------------------------------------------------------------------

# The agent answered: 200 when it did it, 409 when it could not or cannot here (the body's status
# says which). Nobody answered: 503 (not connected) or 504 (no answer in time).
RESULT_HTTP_STATUS = {"ok": 200, "failed": 409, "unsupported": 409, "offline": 503, "timeout": 504}


class CommandResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=sorted(RESULT_HTTP_STATUS))
    message = serializers.CharField()
    data = serializers.DictField()


class MessageSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=100, allow_blank=True, default="")
    text = serializers.CharField(max_length=2000)


def result_response(result: CommandResult) -> Response:
    return Response(asdict(result), status=RESULT_HTTP_STATUS[result.status])


class UserSessionCommandView(APIView):
    """Log off or disconnect a user session through its host's agent."""

    queryset = UserSession.objects.all()
    action = "host-command"
    permission_classes = [HasRole]
    command = ""  # the role verb too: usersession.logoff, usersession.disconnect

    @property
    def role_verb(self) -> str:
        return self.command

    def get_object(self, pk: int):
        """The session, if the caller may read it (else 404) and do this command on it (else 403)."""
        obj = get_object_or_404(grants_for_request(self.request).readable(self.queryset), pk=pk)
        self.check_object_permissions(self.request, obj)
        return obj

    @extend_schema(request=None,
                   responses={code: CommandResultSerializer for code in set(RESULT_HTTP_STATUS.values())})
    def post(self, request: Request, pk: int) -> Response:
        session = self.get_object(pk)
        if self.command == "logoff":
            return result_response(commands.log_off_user_session(session))
        return result_response(commands.disconnect_user_session(session))


class UserSessionMessageView(UserSessionCommandView):
    """Show a message in a user session."""

    command = "message"

    @extend_schema(request=MessageSerializer,
                   responses={code: CommandResultSerializer for code in set(RESULT_HTTP_STATUS.values())})
    def post(self, request: Request, pk: int) -> Response:
        session = self.get_object(pk)
        serializer = MessageSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return result_response(commands.send_message_to_user_session(
            session, serializer.validated_data["title"], serializer.validated_data["text"]))


class RenewCertificateView(APIView):
    """Have a host's agent make a new key and get a new certificate now."""

    queryset = SessionHost.objects.all()
    action = "renew-certificate"
    role_verb = "renew"  # sessionhost.renew
    permission_classes = [HasRole]
    get_object = UserSessionCommandView.get_object

    @extend_schema(request=None,
                   responses={code: CommandResultSerializer for code in set(RESULT_HTTP_STATUS.values())})
    def post(self, request: Request, pk: int) -> Response:
        return result_response(commands.renew_host_certificate(self.get_object(pk)))
