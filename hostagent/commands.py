"""Actions that reach a session host through its channel: the service functions behind the admin's
buttons, the portal and the API. Each returns the agent's result, or "offline" / "timeout" when none came,
and records it in the audit log (core/audit.py: who asked is the request being handled), whatever it was.

``request_command`` is the one way to send a command and wait for its answer: it checks the arguments, answers
"offline" at once when no consumer holds the host's channel, and otherwise exchanges the command over the
channel layer (broker.hostbus).
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.utils import timezone

from broker.choices import UserSessionState
from broker.hostbus import DEFAULT_COMMAND_TIMEOUT, CommandResult, aexchange
from broker.models import SessionHost, UserSession
from core import audit
from core.access import access_changed
from core.choices import AuditAction
from core.models import ApiToken
from hostagent.models import HostChannel
from wire import hostchannel

log = logging.getLogger(__name__)

OFFLINE = CommandResult("offline", "The host's agent is not connected.")


def _command(command: str, args: dict[str, Any] | None) -> hostchannel.Command:
    message = hostchannel.command(secrets.token_urlsafe(16), command,
                                  hostchannel.validate_command_args(command, args or {}))
    hostchannel.encode(message)  # a malformed command fails here, in the producer
    return message


async def arequest_command(host_id: int, command: str, args: dict[str, Any] | None = None,
                           timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
    """Send a command to the host's agent and wait up to ``timeout`` seconds for its result."""
    message = _command(command, args)
    if not await database_sync_to_async(HostChannel.objects.is_connected)(host_id):
        return OFFLINE
    return await aexchange(host_id, message, timeout)


def request_command(host_id: int, command: str, args: dict[str, Any] | None = None,
                    timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
    """``arequest_command`` for views and Celery tasks. The database is read here, in the caller's
    thread and transaction; only the channel-layer exchange runs in an event loop."""
    message = _command(command, args)
    if not HostChannel.objects.is_connected(host_id):
        return OFFLINE
    return async_to_sync(aexchange)(host_id, message, timeout)


def log_off_user_session(user_session: UserSession, *, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
    """End the user's session on its host. On success the row goes at once (the next heartbeat
    would remove it anyway)."""
    result = request_command(user_session.session_host_id, "logoff", {"session_id": user_session.session_id},
                             timeout=timeout)
    if result.ok:
        UserSession.objects.filter(pk=user_session.pk).delete()
    _log("log off", user_session, result)
    _audit(AuditAction.LOGOFF, user_session, result)
    return result


def disconnect_user_session(user_session: UserSession, *, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
    """Drop the user's connection but keep the session running."""
    result = request_command(user_session.session_host_id, "disconnect", {"session_id": user_session.session_id},
                             timeout=timeout)
    if result.ok:
        UserSession.objects.filter(pk=user_session.pk).update(state=UserSessionState.DISCONNECTED)
    _log("disconnect", user_session, result)
    _audit(AuditAction.DISCONNECT, user_session, result)
    return result


def send_message_to_user_session(user_session: UserSession, title: str, text: str, *,
                                 timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
    """Show a message in the user's session (title up to 100, text up to 2,000 characters)."""
    result = request_command(user_session.session_host_id, "message",
                             {"session_id": user_session.session_id, "title": title, "text": text}, timeout=timeout)
    _log("message", user_session, result)
    # The title only: the text is the user's to read, and may be long.
    _audit(AuditAction.MESSAGE, user_session, result, detail=f"title: {title}" if title else "")
    return result


@dataclass(frozen=True)
class SignOutReport:
    """What signing a user out everywhere did."""

    api_tokens_revoked: int
    web_sessions_ended: int
    user_sessions: list[tuple[UserSession, CommandResult]]

    @property
    def sessions_logged_off(self) -> int:
        return sum(1 for _, result in self.user_sessions if result.ok)


def sign_out_everywhere(user, *, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> SignOutReport:
    """An administrator takes a user's access away now: every connection file and API token they hold stops
    working, their browser sign-ins end, and their sessions on session hosts are logged off through the host
    channel (a relay already running ends with its session). Their account and assignments stay: what they
    are entitled to, they can download again after signing in."""
    access_changed([user.pk], "signed out everywhere")
    revoked = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    ended = _end_web_sessions(user.pk)
    results = [(session, log_off_user_session(session, timeout=timeout))
               for session in UserSession.objects.filter(user=user).select_related("session_host")]
    logged_off = sum(1 for _, result in results if result.ok)
    log.info("signed %s out everywhere: %d API token(s) revoked, %d web session(s) ended, %d of %d host "
             "session(s) logged off", user.get_username(), revoked, ended, logged_off, len(results))
    audit.record(AuditAction.SIGN_OUT_EVERYWHERE, user,
                 detail=f"{revoked} API token(s) revoked, {ended} browser sign-in(s) ended, {logged_off} of "
                        f"{len(results)} host session(s) logged off")
    return SignOutReport(api_tokens_revoked=revoked, web_sessions_ended=ended, user_sessions=results)


def _end_web_sessions(user_id: int) -> int:
    """Delete the user's Django sessions. The store does not index them by user, so every live session is
    read once: an administrator's rare action, not a request path."""
    mine = [session.pk for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
            if str(session.get_decoded().get(SESSION_KEY, "")) == str(user_id)]
    Session.objects.filter(pk__in=mine).delete()
    return len(mine)


def renew_host_certificate(session_host: SessionHost, *, timeout: float = 60.0) -> CommandResult:
    """Have the agent make a new key and get a new certificate now."""
    result = request_command(session_host.pk, "renew-certificate", {}, timeout=timeout)
    log.info("renew certificate of host %s: %s %s", session_host.pk, result.status, result.message)
    audit.record(AuditAction.CERTIFICATE_RENEW, session_host, result=result.status, detail=result.message)
    return result


def _audit(action: str, user_session: UserSession, result: CommandResult, detail: str = "") -> None:
    """What was asked of the session and what the agent answered (or that none did)."""
    message = f"{detail}; {result.message}" if detail and result.message else detail or result.message
    audit.record(action, user_session, result=result.status, detail=message,
                 object_repr=f"{user_session.username} session {user_session.session_id} on host "
                             f"{user_session.session_host_id}")


def _log(action: str, user_session: UserSession, result: CommandResult) -> None:
    log.info("%s session %s of %s on host %s: %s %s", action, user_session.session_id, user_session.username,
             user_session.session_host_id, result.status, result.message)
