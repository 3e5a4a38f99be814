"""The stable, documented error codes a connection can fail (or break) with.

Names follow Azure Virtual Desktop's diagnostics codes (``ConnectionFailedNoHealthyRdshAvailable``,
``ConnectionFailedUserNotAuthorized``, ...) so admins who know AVD can read them; where AVD has no
name for one of our failure modes, the new name follows the same pattern. A code never changes meaning
once published: scripts and dashboards filter on ``Connection.error_code``.

Each entry says what the user sees, what fixes it, whose job that is, and which MS-TSGU status the
gateway answers the client with (PROTOCOLS.md §4.4 "Return codes"). ``docs/errors.md`` is generated
from this table by ``python manage.py errors_doc``; a test fails when it is out of date.

Pure Python (no Django), so programs that run outside the server can show the same messages.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum
from typing import Literal

FixBy = Literal["user", "admin", "ours"]


class ProxyStatus(IntEnum):
    """MS-TSGU §2.2.6 status codes, as the gateway puts them in TUNNEL_RESPONSE, CHANNEL_RESPONSE or
    CLOSE_CHANNEL; clients map them to these names (FreeRDP: ``rpc_error_to_string``)."""

    E_PROXY_INTERNALERROR = 0x800759D8
    E_PROXY_RAP_ACCESSDENIED = 0x800759DA
    E_PROXY_NAP_ACCESSDENIED = 0x800759DB
    E_PROXY_ALREADYDISCONNECTED = 0x800759DF
    E_PROXY_CAPABILITYMISMATCH = 0x800759E9
    E_PROXY_COOKIE_BADPACKET = 0x800759F7
    E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED = 0x800759F8
    E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD = 0x800759F9
    ERROR_ACCESS_DENIED = 0x5
    ERROR_BAD_ARGUMENTS = 0xA0
    ERROR_GRACEFUL_DISCONNECT = 0x4CA
    E_PROXY_CONNECTIONABORTED = 0x4D4
    # Refusals travel in TUNNEL/CHANNEL responses, which clients test with FAILED(): the HRESULT form is
    # the one that refuses (FreeRDP's tsg.h defines E_PROXY_TS_CONNECTFAILED as 0x800759DD; with a bare
    # 0x59DD FreeRDP 2.11 opens the channel and starts sending, verified here).
    E_PROXY_TS_CONNECTFAILED = 0x800759DD
    E_PROXY_MAXCONNECTIONSREACHED = 0x800759E6
    E_PROXY_SESSIONTIMEOUT = 0x59F6


class ErrorCode(StrEnum):
    """Every code a Connection's ``error_code`` may hold; the member name is the stored value."""

    ConnectionFailedTicketInvalid = "ConnectionFailedTicketInvalid"
    ConnectionFailedTicketExpired = "ConnectionFailedTicketExpired"
    ConnectionFailedTicketRevoked = "ConnectionFailedTicketRevoked"
    ConnectionFailedTicketAlreadyUsed = "ConnectionFailedTicketAlreadyUsed"
    ConnectionFailedTicketWrongClient = "ConnectionFailedTicketWrongClient"
    ConnectionFailedOriginNotAllowed = "ConnectionFailedOriginNotAllowed"
    ConnectionFailedUnsupportedAuthentication = "ConnectionFailedUnsupportedAuthentication"
    ConnectionFailedClientProtocolError = "ConnectionFailedClientProtocolError"
    ConnectionFailedUserNotAuthorized = "ConnectionFailedUserNotAuthorized"
    ConnectionFailedResourceNotFound = "ConnectionFailedResourceNotFound"
    ConnectionFailedResourceMismatch = "ConnectionFailedResourceMismatch"
    ConnectionFailedNoHealthyRdshAvailable = "ConnectionFailedNoHealthyRdshAvailable"
    ConnectionFailedMaxSessionsReached = "ConnectionFailedMaxSessionsReached"
    ConnectionFailedPersonalDesktopFailed = "ConnectionFailedPersonalDesktopFailed"
    ConnectionFailedNoPersonalDesktopAssigned = "ConnectionFailedNoPersonalDesktopAssigned"
    ConnectionFailedNoPersonalDesktopFree = "ConnectionFailedNoPersonalDesktopFree"
    ConnectionFailedOrchestrationTimeout = "ConnectionFailedOrchestrationTimeout"
    ConnectionFailedAgentDisconnected = "ConnectionFailedAgentDisconnected"
    ConnectionFailedReverseConnectTimeout = "ConnectionFailedReverseConnectTimeout"
    ConnectionFailedHostListenerUnreachable = "ConnectionFailedHostListenerUnreachable"
    ConnectionFailedHostSecurityNegotiation = "ConnectionFailedHostSecurityNegotiation"
    ConnectionFailedHostCertificateMismatch = "ConnectionFailedHostCertificateMismatch"
    ConnectionFailedClientDisconnect = "ConnectionFailedClientDisconnect"
    ConnectionBrokenMissedHeartbeat = "ConnectionBrokenMissedHeartbeat"
    ConnectionBrokenGatewayInstanceLost = "ConnectionBrokenGatewayInstanceLost"
    InternalError = "InternalError"


# The steps of DESIGN.md's connection sequence an error can happen in, in order (for the docs).
STAGES: dict[str, str] = {
    "ticket": "Ticket check (step 6: the gateway validates the client's access token)",
    "authorization": "Authorisation (steps 6-7: the user and the requested resource)",
    "placement": "Placement (step 7: the broker picks a session host)",
    "host": "Host arrival (steps 7-10: the connect order, the agent's reverse connection)",
    "session": "Established connection (steps 11-12)",
    "any": "Any step",
}

FIX_BY_LABELS: dict[str, str] = {
    "user": "the user",
    "admin": "the administrator",
    "ours": "the control plane's developers (a bug)",
}


@dataclass(frozen=True)
class ConnectionErrorCode:
    """One documented error: what the user is told, what fixes it, and the gateway's answer."""

    code: str
    stage: str
    message: str
    remedy: str
    fix_by: FixBy
    gateway_status: ProxyStatus
    note: str = ""

    @property
    def gateway_status_hex(self) -> str:
        return f"0x{int(self.gateway_status):X}"  # as MS-TSGU writes them: 0x800759F8, 0x4D4


def _entries() -> list[ConnectionErrorCode]:
    E, P = ErrorCode, ProxyStatus
    return [
        ConnectionErrorCode(
            code=E.ConnectionFailedTicketInvalid, stage="ticket", fix_by="user",
            gateway_status=P.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED,
            message="Your connection file is not valid. Download it again from the portal and retry.",
            remedy="The access token in the .rdp file is malformed, not signed by this control plane, or "
                   "not a connection ticket. Refresh the feed (or download the file again). If fresh files "
                   "fail too, the administrator should check that every server runs with the same "
                   "WVD_SECRET_KEY. Such requests prove no user, so they are not recorded as connections: "
                   "the gateway counts them and logs 'requests refused: not one of our tickets' at most "
                   "once a minute.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedTicketExpired, stage="ticket", fix_by="user",
            gateway_status=P.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED,
            message="Your connection file has expired. Refresh your resources (or download the file again) "
                    "and retry.",
            remedy="Connection tickets expire (WVD_CONNECTION_TICKET_MINUTES, 8 hours by default); "
                   "refreshing the feed issues a new one. If fresh files are refused as expired, check "
                   "that the servers' clocks agree.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedTicketRevoked, stage="ticket", fix_by="user",
            gateway_status=P.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED,
            message="This connection file has been withdrawn. Refresh your resources and retry.",
            remedy="The file was issued before the user's last access change: they signed out, their "
                   "password was changed, they left a group or an assignment of theirs was changed, or an "
                   "administrator used Sign out everywhere (README, Access). A new file from the feed works "
                   "if the user still has access.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedTicketAlreadyUsed, stage="ticket", fix_by="user",
            gateway_status=P.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED,
            message="This browser session link has been used already. Open the desktop again from your page.",
            remedy="The browser client's ticket (minted when the user clicks \"Open in browser\") is single use: "
                   "the first connection consumes it and any later one with it is refused, so a ticket seen "
                   "in transit cannot be replayed. Reloading the session page mints a new one.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedTicketWrongClient, stage="ticket", fix_by="user",
            gateway_status=P.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED,
            message="This ticket is for another kind of client. Open the desktop from your page again (the "
                    "browser link for the browser, the .rdp file for a Remote Desktop client).",
            remedy="The ticket of a .rdp file was presented by a browser client (RDCleanPath), or the browser "
                   "client's single-use ticket by a Remote Desktop client. Each works only on its own "
                   "transport, so neither can be replayed through the other.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedOriginNotAllowed, stage="ticket", fix_by="admin",
            gateway_status=P.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED,
            message="This web page may not open remote desktops through this gateway. Open the desktop from "
                    "your own portal's page.",
            remedy="A browser client's WebSocket came from a page whose Origin is not one of the portal's "
                   "(WVD_WEB_ORIGINS, by default the web listener's public URL). If the portal is served "
                   "under another name, add that origin to WVD_WEB_ORIGINS. The ticket is not consumed.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedUnsupportedAuthentication, stage="ticket", fix_by="user",
            gateway_status=P.E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD,
            message="Your Remote Desktop client did not present an access token. Open the .rdp file "
                    "downloaded from the portal instead of typing the gateway address by hand.",
            remedy="The gateway only accepts the access token (PAA) carried in the files the feed issues; "
                   "NTLM, smart-card and other gateway logons are not supported.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedClientProtocolError, stage="any", fix_by="user",
            gateway_status=P.E_PROXY_INTERNALERROR,
            message="Your Remote Desktop client sent a request the gateway does not understand. Update the "
                    "client and retry.",
            remedy="A malformed or out-of-order RD Gateway packet. The gateway answers with "
                   "E_PROXY_INTERNALERROR and closes, as MS-TSGU servers do. If a current client triggers "
                   "it, report it with the activity id.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedUserNotAuthorized, stage="authorization", fix_by="admin",
            gateway_status=P.E_PROXY_RAP_ACCESSDENIED,
            message="You do not have access to this desktop or app any more. Refresh your resources; if you "
                    "still need it, ask your administrator to assign it to you.",
            remedy="Checked at every connection: the account was deactivated or deleted, or the user is no "
                   "longer assigned to the application group (the assignment removed, or the user removed "
                   "from the assigned group), or its workspace was unpublished, after the file was issued. "
                   "Assign the user (or one of their groups) to the application group if access is intended.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedResourceNotFound, stage="authorization", fix_by="user",
            gateway_status=P.E_PROXY_RAP_ACCESSDENIED,
            message="This desktop or app no longer exists. Refresh your resources.",
            remedy="Checked at every connection: the host pool, application group, desktop or RemoteApp "
                   "named in the ticket was deleted (or the group renamed or moved to another pool) after "
                   "the file was issued; the refreshed feed no longer lists it.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedResourceMismatch, stage="authorization", fix_by="user",
            gateway_status=P.E_PROXY_RAP_ACCESSDENIED,
            message="The connection asked for a different computer than your connection file allows. Use "
                    "the .rdp file exactly as downloaded.",
            remedy="The resource in the client's CHANNEL_CREATE differs from the host pool the ticket is "
                   "bound to (an edited 'full address', or a ticket reused for another target).",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedNoHealthyRdshAvailable, stage="placement", fix_by="admin",
            gateway_status=P.E_PROXY_TS_CONNECTFAILED,
            message="No session host is available for this desktop or app right now. Try again later; if it "
                    "persists, contact your administrator.",
            remedy="No host of the pool is Available with new sessions allowed: the pool has no hosts, or "
                   "they are all Unavailable, Shut down, Needs assistance, Upgrading or in drain mode. Fix "
                   "or start the hosts, or turn drain mode off on one.",
            note="As in AVD, drain mode counts here: a drained host takes no new sessions (its users "
                 "still reconnect to their existing ones).",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedMaxSessionsReached, stage="placement", fix_by="admin",
            gateway_status=P.E_PROXY_MAXCONNECTIONSREACHED,
            message="All session hosts for this desktop or app are full. Try again later; if it persists, "
                    "contact your administrator.",
            remedy="Every healthy, non-drained host already holds the pool's max session limit (reported "
                   "sessions, active or disconnected, plus connections still being set up). Add hosts, "
                   "raise the limit, or log off disconnected sessions.",
            note="AVD reports this case as ConnectionFailedNoHealthyRdshAvailable; we keep it apart "
                 "because the fix (capacity) differs from the fix for unhealthy hosts.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedPersonalDesktopFailed, stage="placement", fix_by="admin",
            gateway_status=P.E_PROXY_TS_CONNECTFAILED,
            message="Your personal desktop cannot take connections right now. Try again later; if it "
                    "persists, contact your administrator.",
            remedy="The user's assigned host is not Available or is in drain mode. Fix or start that host, "
                   "turn drain mode off, or assign the user another host.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedNoPersonalDesktopAssigned, stage="placement", fix_by="admin",
            gateway_status=P.E_PROXY_RAP_ACCESSDENIED,
            message="No personal desktop has been assigned to you yet. Ask your administrator to assign one.",
            remedy="The pool uses direct assignment and no host has this user as its assigned user. Assign a "
                   "host to the user, or switch the pool to automatic assignment.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedNoPersonalDesktopFree, stage="placement", fix_by="admin",
            gateway_status=P.E_PROXY_MAXCONNECTIONSREACHED,
            message="No personal desktop is free to assign to you. Contact your administrator.",
            remedy="Automatic assignment found no unassigned host that is Available with new sessions "
                   "allowed. Add hosts to the pool, make an unassigned host available, or unassign a host "
                   "that is no longer used.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedOrchestrationTimeout, stage="placement", fix_by="admin",
            gateway_status=P.E_PROXY_TS_CONNECTFAILED,
            message="The service took too long to prepare your connection. Try again.",
            remedy="No session host was chosen in time after the gateway accepted the ticket: the background "
                   "workers are stopped, overloaded, or cannot reach Redis or the database. Check the "
                   "Celery workers and their logs.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedAgentDisconnected, stage="host", fix_by="admin",
            gateway_status=P.E_PROXY_TS_CONNECTFAILED,
            message="The session host could not be reached. Try again; if it persists, contact your "
                    "administrator.",
            remedy="The chosen host's agent is not connected to the control plane (its channel is down or "
                   "dropped while the connection was being set up), so the connect order could not be "
                   "delivered. Check the agent service and its outbound access to the control plane.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedReverseConnectTimeout, stage="host", fix_by="admin",
            gateway_status=P.E_PROXY_TS_CONNECTFAILED,
            message="The session host did not answer in time. Try again; if it persists, contact your "
                    "administrator.",
            remedy="The host was chosen and ordered to connect, but its agent did not reach the gateway "
                   "instance holding the client before the reservation timed out. Check that the host "
                   "can resolve and reach the gateway's public address and trusts its certificate, and "
                   "look at the agent's log for this activity id.",
            note="AVD's nearest codes are ReverseConnectFailed and ConnectionFailedReverseConnectStack*. "
                 "The gateway answers E_PROXY_TS_CONNECTFAILED (\"could not reach the remote computer\"), "
                 "which clients explain better than E_PROXY_SESSIONTIMEOUT, a gateway session-policy "
                 "timeout.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedHostListenerUnreachable, stage="host", fix_by="admin",
            gateway_status=P.E_PROXY_TS_CONNECTFAILED,
            message="The remote desktop service on the session host is not responding. Try again later; if "
                    "it persists, contact your administrator.",
            remedy="The agent reached the gateway but could not connect to the host's local RDP listener "
                   "(127.0.0.1:3389 by default). Check that the RDP service (TermService or xrdp) runs and "
                   "listens where the agent is configured to connect.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedHostSecurityNegotiation, stage="host", fix_by="admin",
            gateway_status=P.E_PROXY_TS_CONNECTFAILED,
            message="The session host's remote desktop service refused a secure connection. Contact your "
                    "administrator.",
            remedy="Browser connections: the gateway asks the host's RDP listener for TLS (as the browser "
                   "client does) and the listener answered without choosing TLS (an RDP negotiation failure, "
                   "or standard RDP security only). Enable TLS on the host's listener (xrdp: "
                   "security_layer=tls or negotiate with a certificate).",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedHostCertificateMismatch, stage="host", fix_by="admin",
            gateway_status=P.E_PROXY_TS_CONNECTFAILED,
            message="The session host presented an unexpected certificate, so the connection was stopped. "
                    "Contact your administrator.",
            remedy="Browser connections: the gateway pins the host's RDP certificate to the SHA-256 "
                   "fingerprint its agent last reported. The listener presented another one, or the agent "
                   "never reported one (run the agent with --rdp-cert/--rdp-key so it installs and reports "
                   "the host's certificate). A mismatch right after a renewal clears when the agent reports "
                   "again; otherwise check what answers on the host's RDP port.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionFailedClientDisconnect, stage="host", fix_by="user",
            gateway_status=P.E_PROXY_CONNECTIONABORTED,
            message="Your device disconnected before the connection was ready. Check your network and retry.",
            remedy="The client closed its connection to the gateway before the session host arrived. "
                   "Nothing to fix unless it happens often, which points at the user's network or a "
                   "client giving up too early.",
            note="The client is gone, so no one receives the gateway status; it is listed for the records.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionBrokenMissedHeartbeat, stage="session", fix_by="admin",
            gateway_status=P.E_PROXY_CONNECTIONABORTED,
            message="The connection to the session host was lost. Reconnect; your session is usually still "
                    "there.",
            remedy="The host stopped sending heartbeats while the connection was open, so it was marked "
                   "Unavailable and its connections ended. Check the host (power, network, agent service).",
            note="AVD: ConnectionBrokenMissedHeartbeatThresholdExceeded.",
        ),
        ConnectionErrorCode(
            code=E.ConnectionBrokenGatewayInstanceLost, stage="any", fix_by="admin",
            gateway_status=P.E_PROXY_CONNECTIONABORTED,
            message="The gateway server holding your connection stopped. Reconnect; your session is usually "
                    "still there.",
            remedy="The `serve` instance that held the connection stopped refreshing its row (killed, crashed, "
                   "its machine lost, or cut off from the database) while another instance refreshed its own for "
                   "WVD_GATEWAY_INSTANCE_MISSED_HEARTBEATS of its WVD_GATEWAY_INSTANCE_HEARTBEAT intervals, so "
                   "the surviving processes ended its open "
                   "connections (the byte counts died with it). Check that instance's service and log; a "
                   "reconnect goes through a surviving instance.",
            note="An instance that stops cleanly, or restarts under the same name, ends its connections as "
                 "gateway_shutdown instead.",
        ),
        ConnectionErrorCode(
            code=E.InternalError, stage="any", fix_by="ours",
            gateway_status=P.E_PROXY_INTERNALERROR,
            message="Something went wrong on our side. Try again; if it persists, give your administrator "
                    "the activity id.",
            remedy="An unexpected error in the control plane. The server log has the details under the "
                   "connection's activity id; please report it.",
        ),
    ]


ERRORS: dict[str, ConnectionErrorCode] = {entry.code: entry for entry in _entries()}

# verify_connection_ticket() refusal reasons (core/tickets.py) -> the code the gateway records.
TICKET_REFUSAL_CODES: dict[str, ErrorCode] = {
    "malformed": ErrorCode.ConnectionFailedTicketInvalid,
    "bad_signature": ErrorCode.ConnectionFailedTicketInvalid,
    "wrong_kind": ErrorCode.ConnectionFailedTicketInvalid,
    "expired": ErrorCode.ConnectionFailedTicketExpired,
    "revoked": ErrorCode.ConnectionFailedTicketRevoked,
    "used": ErrorCode.ConnectionFailedTicketAlreadyUsed,
}


def describe(code: str) -> ConnectionErrorCode:
    """The entry for ``code``; an unknown code (an old or foreign value) is shown as an internal error
    that keeps its original code, so displaying a stored record never fails."""
    entry = ERRORS.get(code)
    if entry is not None:
        return entry
    return replace(ERRORS[ErrorCode.InternalError], code=code, note="This code is not in the current table.")


def render_markdown() -> str:
    """docs/errors.md, generated from the table (``python manage.py errors_doc`` writes it)."""
    lines = [
        "# Connection error codes",
        "",
        "<!-- Generated from wire/errors.py by `python manage.py errors_doc`; do not edit by hand. -->",
        "",
        "A connection that fails records one of these stable codes in `error_code`, with the message the "
        "user sees in `error_message`. The gateway answers the client with the MS-TSGU status in the "
        "last column. Names follow Azure Virtual Desktop's diagnostics codes where AVD has one.",
        "",
        "Access is checked again at every connection, not only when the file is issued. In this order: "
        "a deactivated or deleted account is `ConnectionFailedUserNotAuthorized`; a deleted host pool, "
        "application group, desktop or RemoteApp (or a group renamed or moved) is "
        "`ConnectionFailedResourceNotFound`; a user no longer assigned (assignment removed or changed, "
        "user removed from the assigned group, workspace unpublished) is `ConnectionFailedUserNotAuthorized`; "
        "a file issued before the user's last sign-out, password change, group membership change, "
        "assignment change or an administrator's Sign out everywhere is `ConnectionFailedTicketRevoked`. "
        "A session already relaying goes on until it ends; Sign out everywhere logs it off. A ticket that "
        "is not ours (`ConnectionFailedTicketInvalid`) writes no record. The README's Access section has "
        "the details.",
        "",
        "| code | stage | fix by | gateway status |",
        "| --- | --- | --- | --- |",
    ]
    ordered = sorted(ERRORS.values(), key=lambda e: list(STAGES).index(e.stage))
    for entry in ordered:
        lines.append(
            f"| [`{entry.code}`](#{entry.code.lower()}) | {entry.stage} | {entry.fix_by} | "
            f"`{entry.gateway_status.name}` ({entry.gateway_status_hex}) |"
        )
    for stage, title in STAGES.items():
        in_stage = [entry for entry in ordered if entry.stage == stage]
        if not in_stage:
            continue
        lines += ["", f"## {title}"]
        for entry in in_stage:
            lines += [
                "",
                f"### {entry.code}",
                "",
                f"- **User sees:** {entry.message}",
                f"- **Cause and remedy:** {entry.remedy}",
                f"- **Fixed by:** {FIX_BY_LABELS[entry.fix_by]}",
                f"- **Gateway answers:** `{entry.gateway_status.name}` ({entry.gateway_status_hex})",
            ]
            if entry.note:
                lines.append(f"- **Note:** {entry.note}")
    return "\n".join(lines) + "\n"
