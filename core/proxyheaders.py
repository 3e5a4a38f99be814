"""X-Forwarded-Proto counts only from a trusted proxy.

Behind a TLS-terminating proxy, Django learns that the client used HTTPS from SECURE_PROXY_SSL_HEADER
(settings: X-Forwarded-Proto). Django believes that header from anyone; this middleware, first in the
stack, removes it unless the peer is one of WVD_TRUSTED_PROXIES (the same rule core.clientaddress applies to
X-Forwarded-For), so a client can neither make a plain request look secure nor a secure one look plain.
"""
from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest

from core.clientaddress import parse_address

FORWARDED_PROTO = "HTTP_X_FORWARDED_PROTO"


def from_trusted_proxy(request: HttpRequest) -> bool:
    """True when the request's peer (REMOTE_ADDR) is one of the trusted proxies."""
    peer = parse_address(request.META.get("REMOTE_ADDR") or "")
    return peer is not None and any(peer in network for network in settings.TRUSTED_PROXIES)


def drop_untrusted_proxy_headers(request: HttpRequest) -> None:
    header = settings.SECURE_PROXY_SSL_HEADER[0] if settings.SECURE_PROXY_SSL_HEADER else FORWARDED_PROTO
    if header in request.META and not from_trusted_proxy(request):
        del request.META[header]


class TrustedProxyHeadersMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        drop_untrusted_proxy_headers(request)
        return self.get_response(request)  # a coroutine on the async path: the caller awaits it
