"""Client sign-in endpoints, mounted at /api/v1/auth/."""
from __future__ import annotations

from django.urls import path

from wvdportal.signin import TokenSignInView

urlpatterns = [
    path("token/", TokenSignInView.as_view(), name="signin-token"),
]
