"""How portal pages answer: the whole page or only its live parts, and the way back after an action."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme

PAGE_SIZE = 50  # rows per page of a long list (sessions, connections)


def page(request: HttpRequest, template: str, context: dict, *, fragments: dict[str, str] | None = None,
         status: int = 200) -> HttpResponse:
    """The page, or with ``?fragments=1`` its live parts as JSON ``{"fragments": {key: html}}``."""
    if fragments and request.GET.get("fragments") == "1":
        return JsonResponse({"fragments": {key: render_to_string(name, context, request)
                                           for key, name in fragments.items()}})
    return render(request, template, context, status=status)


def back(request: HttpRequest, default: str) -> str:
    """The page to return to after an action: the form's ``next`` when it is one of ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default
