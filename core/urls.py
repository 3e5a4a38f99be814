"""The core's public URLs: the CA certificate and client sign-in (the root mounts them at ``""``)."""
from __future__ import annotations

from django.urls import path

from core import views
from core.signin import TokenSignInView

urlpatterns = [
    path("ca.pem", views.ca_certificate, name="ca-certificate"),
    path("api/v1/auth/token/", TokenSignInView.as_view(), name="signin-token"),
]
