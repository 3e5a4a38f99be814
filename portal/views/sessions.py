"""User sessions: listed and searched; logged off, disconnected or sent a message through the host's
agent, with the agent's answer shown to the admin."""
from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from broker.hostbus import CommandResult
from broker.models import UserSession
from hostagent import commands
from portal import forms, live
from core.authorization import grants_for_request
from portal.access import allowed, forbidden, portal_user_required, readable
from portal.views.responses import PAGE_SIZE, back, form_page, page

log = logging.getLogger(__name__)

SESSION_FRAGMENTS = {"sessions": "portal/_session_table.html"}
# A portal request waits this long for the agent's answer: long enough for a loaded host, short enough
# for a person watching the page.
COMMAND_TIMEOUT = 10.0


@portal_user_required
@require_safe
def session_list(request: HttpRequest) -> HttpResponse:
    if not grants_for_request(request).anywhere("usersession.view"):
        return forbidden(request, "read user sessions")
    form = forms.SessionSearchForm(request.GET or None)
    sessions = readable(request, UserSession.objects.all()).select_related("session_host__host_pool", "user").order_by(
        "session_host__name", "session_id")
    query = form.cleaned_data["q"].strip() if form.is_valid() else ""
    if query:
        sessions = sessions.filter(Q(username__icontains=query) | Q(user__username__icontains=query)
                                   | Q(session_host__name__icontains=query))
    rows = Paginator(sessions, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page": rows, "query": query, "nav": "sessions"}
    return page(request, "portal/session_list.html", context, fragments=SESSION_FRAGMENTS)


def _session_or_gone(request: HttpRequest, pk: int, verb: str) -> tuple[UserSession | None, HttpResponse | None]:
    """The session, if the user may read it and do ``verb`` (logoff, disconnect, message) to it."""
    session = readable(request, UserSession.objects.select_related("session_host")).filter(pk=pk).first()
    if session is not None and not allowed(request, verb, session):
        return None, forbidden(request, f"{verb} sessions on {session.session_host.name}")
    if session is None:
        messages.info(request, "That session has already ended (the host reported it gone, or someone logged it "
                               "off).")
        return None, redirect(back(request, reverse("portal:sessions")))
    return session, None


def _report(request: HttpRequest, action: str, session: UserSession, result: CommandResult) -> None:
    """Put the agent's answer on the next page, in words."""
    who = f"{session.username}'s session {session.session_id} on {session.session_host.name}"
    if result.ok:
        messages.success(request, f"{action}: done for {who}." + (f" {result.message}" if result.message else ""))
        return
    reasons = {
        "offline": "the host's agent is not connected, so nothing was sent",
        "timeout": "the host did not answer in time; it may still act on it",
        "unsupported": "the host's agent does not support this",
        "failed": "the host reported a failure",
    }
    detail = f" ({result.message})" if result.message else ""
    messages.error(request, f"{action} for {who} failed: {reasons.get(result.status, result.status)}{detail}.")


def _send(request: HttpRequest, pk: int, action: str, command: Callable[..., CommandResult],
          done: str, verb: str) -> HttpResponse:
    """Send one command to the session through its host's agent, wait for the answer, report it in words
    and go back to the page the admin came from."""
    session, answer = _session_or_gone(request, pk, verb)
    if answer:
        return answer
    result = command(session, timeout=COMMAND_TIMEOUT)
    if result.ok:
        # The command changed the row through a queryset (live.py: update() sends no signal).
        live.notify_sessions_changed(session.session_host_id)
    log.info("%s %s %s: %s", request.user, done, session, result.status)
    _report(request, action, session, result)
    return redirect(back(request, reverse("portal:sessions")))


@portal_user_required
@require_POST
def session_logoff(request: HttpRequest, pk: int) -> HttpResponse:
    return _send(request, pk, "Log off", commands.log_off_user_session, "logged off", "logoff")


@portal_user_required
@require_POST
def session_disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    return _send(request, pk, "Disconnect", commands.disconnect_user_session, "disconnected", "disconnect")


@portal_user_required
def session_message(request: HttpRequest, pk: int) -> HttpResponse:
    session, answer = _session_or_gone(request, pk, "message")
    if answer:
        return answer
    form = forms.MessageForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = commands.send_message_to_user_session(session, form.cleaned_data["title"], form.cleaned_data["text"],
                                                       timeout=COMMAND_TIMEOUT)
        log.info("%s sent a message to %s: %s", request.user, session, result.status)
        _report(request, "Message", session, result)
        if result.ok:
            return redirect(back(request, reverse("portal:sessions")))
    return form_page(request, "portal/session_message.html", {"session": session, "nav": "sessions"}, form)
