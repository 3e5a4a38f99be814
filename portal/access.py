"""Who may use the portal (active users holding a role, superusers), what each may see and do there (their
roles, core/authorization.py), and the answers for everyone else and for vanished objects."""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control

from core.authorization import Grants, action_for, grants_for_request, grants_of

log = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def is_portal_user(user) -> bool:
    """Active and holding a role somewhere (or a superuser): the one rule for every portal page and the
    portal's WebSocket (consumers.py); what each sees there is up to the roles. ``None`` (a socket scope
    without a user) is nobody. Staff status alone is not enough (docs/roles.md)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    grants = grants_of(user)
    return grants.superuser or bool(grants.held)


def grants(request: HttpRequest) -> Grants:
    return grants_for_request(request)


def readable(request: HttpRequest, queryset: QuerySet) -> QuerySet:
    """The rows of ``queryset`` the signed-in user may read."""
    return grants(request).readable(queryset)


def allowed(request: HttpRequest, verb: str, obj: Model) -> bool:
    return grants(request).allows(action_for(type(obj), verb), obj)


def forbidden(request: HttpRequest, what: str = "") -> HttpResponse:
    log.info("%s was refused %s %s%s", request.user.get_username(), request.method, request.path,
             f" ({what})" if what else "")
    return render(request, "portal/forbidden.html", {"what": what}, status=403)


def template_context(request: HttpRequest) -> dict:
    """``portal_user`` for every template: whether the signed-in user may use the portal (a role, or a
    superuser), which shows the portal's link, sidebar and live updates. Asked only when a template uses it,
    and then once per request."""

    def portal_user() -> bool:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_active:
            return False
        held = grants(request)
        return held.superuser or bool(held.held)

    return {"portal_user": portal_user}


def portal_user_required(view: View) -> View:
    """Anonymous visitors go to the login page; signed-in users holding no role get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and (grants(request).superuser or grants(request).held)):
            return forbidden(request, "no role")
        response = view(request, *args, **kwargs)
        # Pages show live state and sometimes secrets: never served from a cache.
        patch_cache_control(response, private=True, no_cache=True)
        return response

    wrapper.portal_guarded = True  # the permission tests check every route carries it
    return wrapper


def gone(request: HttpRequest, what: str, back_url: str, back_label: str) -> HttpResponse:
    """A clear 404 for a page whose object was deleted meanwhile (by another admin, an agent, the API)."""
    log.info("%s asked for %s, which no longer exists (%s %s)", request.user, what, request.method, request.path)
    context = {"what": what, "back_url": back_url, "back_label": back_label}
    return render(request, "portal/gone.html", context, status=404)
