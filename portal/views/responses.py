"""How portal pages answer: the whole page or only its live parts, a form page, the way back after an action,
and the page for an object deleted meanwhile."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from portal.access import gone

PAGE_SIZE = 50  # rows per page of a long list (sessions, connections)


def page(request: HttpRequest, template: str, context: dict, *, fragments: dict[str, str] | None = None,
         status: int = 200) -> HttpResponse:
    """The page, or with ``?fragments=1`` its live parts as JSON ``{"fragments": {key: html}}``."""
    if fragments and request.GET.get("fragments") == "1":
        return JsonResponse({"fragments": {key: render_to_string(name, context, request)
                                           for key, name in fragments.items()}})
    return render(request, template, context, status=status)


def form_page(request: HttpRequest, template: str, context: dict, form) -> HttpResponse:
    """A form page; a submitted form with errors answers 400, the errors beside what was typed."""
    status = 400 if form.is_bound and form.errors else 200
    return render(request, template, {**context, "form": form}, status=status)


def back(request: HttpRequest, default: str) -> str:
    """The page to return to after an action: the form's ``next`` when it is one of ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


@dataclass(frozen=True)
class Link:
    """A portal page by its URL name. ``of`` says whose page it is when the URL takes a pk: the ``object``
    or the ``parent`` of the view that follows the link (generic.ObjectEditView)."""

    name: str
    of: Literal["object", "parent"] | None = None

    def url(self, view=None) -> str:
        if self.of is None:
            return reverse(self.name)
        return reverse(self.name, args=[getattr(view, self.of).pk])


@dataclass(frozen=True)
class GonePage:
    """What to answer when the object a URL names was deleted meanwhile: a 404 saying what it was, with a
    way back (access.gone)."""

    what: str
    back: Link
    back_label: str

    def answer(self, request: HttpRequest, view=None) -> HttpResponse:
        return gone(request, self.what, self.back.url(view), self.back_label)
