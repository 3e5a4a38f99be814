"""The core's public URLs: the CA certificate, client sign-in and, with WVD_OIDC_ISSUER set, the OIDC
sign-in's two steps (the root mounts them at ``""``)."""
from __future__ import annotations

from django.conf import settings
from django.urls import path

from core import oidc, views
from core.signin import TokenSignInView


def oidc_patterns() -> list:
    """Sign-in with the OIDC provider (core/oidc.py): none unless one is configured."""
    return [
        path("accounts/oidc/start/", oidc.StartView.as_view(), name="oidc-start"),
        path("accounts/oidc/callback/", oidc.CallbackView.as_view(), name=oidc.CALLBACK_URL_NAME),
    ]


urlpatterns = [
    path("ca.pem", views.ca_certificate, name="ca-certificate"),
    path("api/v1/auth/token/", TokenSignInView.as_view(), name="signin-token"),
    *(oidc_patterns() if settings.OIDC else []),
]
