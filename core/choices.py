from __future__ import annotations

from django.db import models


class CertificatePurpose(models.TextChoices):
    CA = "ca", "Certificate authority"
    FEED_SIGNING = "feed-signing", "Feed signing (.rdp files)"
    HOST_AGENT = "host-agent", "Host agent identity"
    HOST_RDP = "host-rdp", "Session host RDP listener"
    GATEWAY_TLS = "gateway-tls", "Gateway TLS"


class AuditAction(models.TextChoices):
    """What an audit event records (core/audit.py, docs/audit.md)."""

    CREATE = "create", "Create"
    CHANGE = "change", "Change"
    DELETE = "delete", "Delete"
    ASSIGN = "assign", "Assign"
    ASSIGNMENT_CHANGE = "assignment_change", "Change an assignment"
    UNASSIGN = "unassign", "Unassign"
    ROLE_GRANT = "role_grant", "Grant a role"
    ROLE_CHANGE = "role_change", "Change a role assignment"
    ROLE_REVOKE = "role_revoke", "Revoke a role"
    DRAIN = "drain", "Drain mode on"
    UNDRAIN = "undrain", "Drain mode off"
    REPLACEMENT_MARK = "replacement_mark", "Mark a host for replacement"
    REPLACEMENT_CANCEL = "replacement_cancel", "Cancel a host's replacement"
    LOGOFF = "logoff", "Log off a user session"
    DISCONNECT = "disconnect", "Disconnect a user session"
    MESSAGE = "message", "Send a message to a user session"
    SIGN_OUT_EVERYWHERE = "sign_out_everywhere", "Sign a user out everywhere"
    CERTIFICATE_RENEW = "certificate_renew", "Renew a host's certificate"
    TOKEN_ISSUE = "token_issue", "Issue an API token"
    TOKEN_REVOKE = "token_revoke", "Revoke an API token"
    REGISTRATION_TOKEN_ISSUE = "registration_token_issue", "Issue a registration token"
    REGISTRATION_TOKEN_REVOKE = "registration_token_revoke", "Revoke a registration token"
    SIGN_IN = "sign_in", "Staff sign-in"


class AuditCredential(models.TextChoices):
    """How the actor proved who they were."""

    SESSION = "session", "Browser session"
    API_TOKEN = "api_token", "API token"
    NONE = "none", "None (the system)"


class AuditSurface(models.TextChoices):
    """Where the action came from."""

    API = "api", "REST API"
    ADMIN = "admin", "Django admin"
    PORTAL = "portal", "Admin portal"
    WEB = "web", "Web (other pages)"
    SYSTEM = "system", "System (tasks, commands)"
