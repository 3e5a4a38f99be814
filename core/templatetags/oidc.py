"""``{% oidc_sign_in next %}``: the login page's "Sign in with <provider>" button, only when WVD_OIDC_ISSUER is
set (core/oidc.py)."""
from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.conf import settings
from django.urls import reverse

register = template.Library()


@register.inclusion_tag("registration/_oidc_button.html")
def oidc_sign_in(next_url: str = "") -> dict:
    if not settings.OIDC:
        return {"url": ""}
    query = f"?{urlencode({'next': next_url})}" if next_url else ""
    return {"url": reverse("oidc-start") + query, "provider_name": settings.OIDC["PROVIDER_NAME"]}
