"""API token authentication: ``Authorization: Bearer <token>`` or ``Authorization: Token <token>``."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from core.clientaddress import client_address
from core.models import ApiToken

log = logging.getLogger(__name__)
KEYWORDS = {"bearer", "token"}
# Write last_used_at at most this often: a busy client must not turn every GET into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        parts = header.split()
        if not parts or parts[0].decode("latin-1").lower() not in KEYWORDS:
            return None  # Another scheme (e.g. Basic): not ours to judge.
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected '<scheme> <token>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token: not ASCII.") from None
        token = ApiToken.authenticate(key)
        if token is None:
            log.info("refused API token %s… from %s", key[:12], client_address(request))
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("This account is disabled.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
