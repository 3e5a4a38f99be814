"""Who may use the portal (active staff), and the answers for everyone else and for vanished objects."""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control

log = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def is_portal_user(user) -> bool:
    """Active staff: the one rule for every portal page and the portal's WebSocket (consumers.py).
    ``None`` (a socket scope without a user) is nobody."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def staff_required(view: View) -> View:
    """Anonymous visitors go to the login page; signed-in users who are not staff get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_portal_user(user):
            log.info("%s (not staff) was refused %s %s", user.get_username(), request.method, request.path)
            return render(request, "portal/forbidden.html", status=403)
        response = view(request, *args, **kwargs)
        # Pages show live state and sometimes secrets: never served from a cache.
        patch_cache_control(response, private=True, no_cache=True)
        return response

    wrapper.portal_staff_only = True  # the permission tests check every route carries it
    return wrapper


def gone(request: HttpRequest, what: str, back_url: str, back_label: str) -> HttpResponse:
    """A clear 404 for a page whose object was deleted meanwhile (by another admin, an agent, the API)."""
    log.info("%s asked for %s, which no longer exists (%s %s)", request.user, what, request.method, request.path)
    context = {"what": what, "back_url": back_url, "back_label": back_label}
    return render(request, "portal/gone.html", context, status=404)
