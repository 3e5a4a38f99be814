"""Django admin for what the host channel reaches: the user sessions agents report, and the actions that
act on them through the channel (log off, disconnect, send a message); and, on users, "sign out everywhere",
which also logs their sessions off."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest

from broker.models import UserSession
from core.admin import ReadOnlyAdminMixin, RoleAdminMixin, SuperuserOnlyAdminMixin
from hostagent.commands import (
    disconnect_user_session,
    log_off_user_session,
    send_message_to_user_session,
    sign_out_everywhere,
)

# How long an admin action waits for the agent's answer before reporting a timeout.
ADMIN_COMMAND_TIMEOUT = 15.0


class UserSessionActionForm(ActionForm):
    title = forms.CharField(max_length=100, required=False, label="Message title")
    text = forms.CharField(max_length=2000, required=False, label="Message text")


@admin.register(UserSession)
class UserSessionAdmin(ReadOnlyAdminMixin, RoleAdminMixin, admin.ModelAdmin):
    """Sessions are the agent's report; the admin acts on them through the host channel."""

    list_display = ["username", "session_host", "session_id", "state", "started_at", "updated_at"]
    list_filter = ["state", "session_host__host_pool", "started_at"]
    search_fields = ["username", "user__username", "session_host__name"]
    ordering = ["session_host__name", "session_id"]
    list_select_related = ["session_host", "user"]
    action_form = UserSessionActionForm
    actions = ["log_off", "disconnect", "send_message"]

    # The records stay read-only; acting on the sessions needs usersession.logoff, .disconnect or .message.
    role_verbs = ("logoff", "disconnect", "message")

    def _report(self, request: HttpRequest, session: UserSession, result) -> None:
        level = messages.SUCCESS if result.ok else messages.WARNING
        self.message_user(request, f"{session}: {result.status}{' - ' + result.message if result.message else ''}",
                          level)

    @admin.action(description="Log off the selected sessions", permissions=["logoff"])
    def log_off(self, request: HttpRequest, queryset: QuerySet[UserSession]) -> None:
        for session in queryset:
            self._report(request, session, log_off_user_session(session, timeout=ADMIN_COMMAND_TIMEOUT))

    @admin.action(description="Disconnect the selected sessions", permissions=["disconnect"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[UserSession]) -> None:
        for session in queryset:
            self._report(request, session, disconnect_user_session(session, timeout=ADMIN_COMMAND_TIMEOUT))

    @admin.action(description="Send a message (type the title and text above)", permissions=["message"])
    def send_message(self, request: HttpRequest, queryset: QuerySet[UserSession]) -> None:
        text = request.POST.get("text", "").strip()
        if not text:
            self.message_user(request, "Type the message text first.", messages.ERROR)
            return
        title = request.POST.get("title", "").strip()[:100]
        for session in queryset:
            self._report(request, session, send_message_to_user_session(
                session, title, text[:2000], timeout=ADMIN_COMMAND_TIMEOUT))


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(SuperuserOnlyAdminMixin, auth_admin.UserAdmin):
    """Django's user admin, with the action administrators ask for when an account must stop now. Superusers
    only: a user's account, groups and flags are what every role hangs on (docs/roles.md)."""

    actions = [*auth_admin.UserAdmin.actions, "sign_out_everywhere"]

    @admin.action(description="Sign out everywhere (files, tokens, browser sign-ins, host sessions)",
                  permissions=["change"])
    def sign_out_everywhere(self, request: HttpRequest, queryset: QuerySet) -> None:
        for user in queryset:
            report = sign_out_everywhere(user, timeout=ADMIN_COMMAND_TIMEOUT)
            failed = [f"{session.session_host} #{session.session_id}: {result.status}"
                      for session, result in report.user_sessions if not result.ok]
            self.log_change(request, user, "Signed out everywhere")
            self.message_user(
                request,
                f"{user.get_username()}: connection files and {report.api_tokens_revoked} API token(s) revoked, "
                f"{report.web_sessions_ended} browser sign-in(s) ended, {report.sessions_logged_off} host "
                f"session(s) logged off" + (f"; not logged off: {', '.join(failed)}" if failed else "."),
                messages.WARNING if failed else messages.SUCCESS,
            )
