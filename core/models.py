"""Models shared by every app: issued certificates, API tokens, access changes, directory accounts, role
assignments, the audit log."""
from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.utils import timezone

from core import scopes
from core.choices import AuditAction, AuditCredential, AuditSurface, CertificatePurpose
from core.hashing import hash_secret
from core.roles import ROLE_CHOICES, ROLES, ScopeType

API_TOKEN_PREFIX = "wvd_"


class Certificate(models.Model):
    """Every certificate our CA issued (and the CA's own)."""

    serial_number = models.CharField(max_length=64, unique=True, help_text="Hexadecimal.")
    subject = models.CharField(max_length=500)
    common_name = models.CharField(max_length=255, db_index=True)
    purpose = models.CharField(max_length=20, choices=CertificatePurpose.choices)
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    pem = models.TextField()
    issued_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(max_length=200, blank=True)
    renewed_by = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="renews"
    )

    class Meta:
        ordering = ["-issued_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(not_after__gt=models.F("not_before")),
                                   name="certificate_validity_window"),
        ]

    def __str__(self) -> str:
        return f"{self.common_name} ({self.get_purpose_display()}, {self.serial_number[:12]})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_valid_now(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and self.not_before <= now < self.not_after


class ApiTokenQuerySet(models.QuerySet):
    def usable(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A per-user bearer token for the API; only its hash is stored, the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    description = models.CharField(max_length=200, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise it.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user, *, description: str = "", lifetime: timedelta | None = None) -> tuple[ApiToken, str]:
        """Create a token for ``user``; returns the record and the token text (never stored)."""
        key = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = timezone.now() + lifetime if lifetime else None
        token = cls.objects.create(
            user=user, description=description, key_hash=hash_secret(key), prefix=key[:12], expires_at=expires_at
        )
        return token, key

    @classmethod
    def authenticate(cls, key: str) -> ApiToken | None:
        if not key.startswith(API_TOKEN_PREFIX) or len(key) > 200:
            return None
        return cls.objects.usable().select_related("user").filter(key_hash=hash_secret(key)).first()

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    def revoke(self) -> bool:
        """Refuse the token from now on; False when it was revoked already."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = timezone.now()
        return bool(ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=self.revoked_at))


class RevokedTicket(models.Model):
    """A connection or host ticket refused before its expiry (core.tickets). Kept only until the
    ticket expires anyway; a periodic task purges older rows.

    A single-use web ticket is consumed by inserting its row with ``used`` set when it is admitted: the
    unique jti makes the first admission the only one (core.tickets.consume_single_use)."""

    jti = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(default=timezone.now)
    used = models.BooleanField(default=False, help_text="Consumed by its one admission (a web ticket), not revoked.")

    class Meta:
        ordering = ["-revoked_at", "-id"]

    def __str__(self) -> str:
        return f"ticket {self.jti}"


class OidcAccount(models.Model):
    """A user who signs in through the OpenID Connect provider (core/oidc.py): who they are there.

    Matched by the provider's ``issuer`` and ``subject`` (the ID token's ``iss`` and ``sub``), which the
    provider never reassigns, not by e-mail: an address can change hands or be edited by the user at some
    providers, and matching on it would hand one person's account to another. Created at the first sign-in.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_account")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    signed_in_at = models.DateTimeField(default=timezone.now, help_text="Last sign-in through the provider.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="oidc_account_identity")]
        ordering = ["-signed_in_at"]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class OidcGroup(models.Model):
    """Marks a Django group as the provider's: its membership is set from the groups claim at each sign-in.

    Groups without this mark (made by hand, or mirrored from a directory) are never joined or left because
    of a claim, even when a claim names them: a claim must not grant what a local group carries.
    """

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="oidc_origin")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["group__name"]

    def __str__(self) -> str:
        return self.group.name


class UserAccessChange(models.Model):
    """The last time a user's access changed: connection tickets issued until then are refused.

    Advanced by everything that takes access away or ends a sign-in (core/access.py): sign-out, a new
    password, deactivation, group membership changes, unassignment. Keyed by the user's id without a foreign
    key, so an access change recorded while the user is being deleted (their assignments go first) cannot
    break the deletion; the row of a deleted user is harmless (ids are never reused).
    """

    user_id = models.PositiveBigIntegerField(primary_key=True)
    changed_at = models.DateTimeField()
    reason = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.reason} at {self.changed_at:%Y-%m-%d %H:%M:%S}"


class DirectoryAccount(models.Model):
    """A user who signs in with their directory password (core/directory.py): the directory owns their
    password, name, e-mail, groups and (with WVD_LDAP_STAFF_GROUP) staff flag.

    Created at the user's first directory sign-in. A local account (a user without this row) is never
    signed in by the directory, even when a directory user has the same name. The periodic sync
    refreshes these users oldest first (``synced_at``) and deactivates the ones the directory no longer has.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="directory_account")
    dn = models.CharField("distinguished name", max_length=1024)
    synced_at = models.DateTimeField(default=timezone.now, db_index=True,
                                     help_text="Last sign-in or sync that read this user from the directory.")

    class Meta:
        ordering = ["synced_at"]

    def __str__(self) -> str:
        return self.dn


class RoleAssignment(models.Model):
    """A role (core/roles.py) given to one user or one group at one scope: everything, or one workspace, host
    pool or application group (its id; the scope's objects live in the apps above, which register them in
    core/scopes.py, so this is an id and a type rather than a foreign key). A group's members hold the role:
    a directory group given a role covers the directory's members. Deleting the scope's object deletes its
    assignments (core/scopes.py), so an id used again can never inherit one."""

    role = models.CharField(max_length=60, choices=ROLE_CHOICES)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="role_assignments")
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="role_assignments")
    scope_type = models.CharField(max_length=20, choices=ScopeType.choices)
    scope_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="Empty for the scope 'all'.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["role", "scope_type", "scope_id", "pk"]
        indexes = [models.Index(fields=["scope_type", "scope_id"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, group__isnull=True) | models.Q(user__isnull=True,
                                                                                       group__isnull=False),
                name="roleassignment_one_principal",
                violation_error_message="Give the role to a user or to a group: exactly one of them.",
            ),
            models.CheckConstraint(
                condition=models.Q(scope_type=ScopeType.ALL, scope_id__isnull=True)
                | (~models.Q(scope_type=ScopeType.ALL) & models.Q(scope_id__isnull=False)),
                name="roleassignment_scope_id_with_scope",
                violation_error_message="scope_id names the workspace, host pool or application group; "
                                        "it is empty for the scope 'all'.",
            ),
        ]

    def __str__(self) -> str:
        principal = f"user {self.user}" if self.user_id else f"group {self.group}"
        where = "everything" if self.scope_type == ScopeType.ALL else f"{self.scope_type} {self.scope_id}"
        return f"{self.role} for {principal} on {where}"

    def clean(self) -> None:
        errors = {}
        role = ROLES.get(self.role)
        if role is not None and self.scope_type and self.scope_type not in role.scopes:
            errors["scope_type"] = (f"{self.role} can be given at the scopes {', '.join(role.scopes)}, "
                                    f"not {self.scope_type}.")
        elif (self.scope_type and self.scope_type != ScopeType.ALL and self.scope_id is not None
              and not scopes.scope_exists(self.scope_type, self.scope_id)):
            errors["scope_id"] = f"There is no {self.scope_type} with id {self.scope_id}."
        if errors:
            raise ValidationError(errors)
        duplicate = RoleAssignment.objects.filter(role=self.role, user_id=self.user_id, group_id=self.group_id,
                                                  scope_type=self.scope_type, scope_id=self.scope_id)
        if duplicate.exclude(pk=self.pk).exists():
            raise ValidationError("This principal already holds this role at this scope.")


class AuditLogIsAppendOnly(PermissionDenied):
    """An audit event is written once and never changed; only the retention purge removes old ones."""


class AuditEventQuerySet(models.QuerySet):
    """Append-only: ``update()`` and ``delete()`` refuse. The one way rows leave is ``purge_before``
    (retention, WVD_AUDIT_RETENTION_DAYS)."""

    def update(self, **kwargs):
        raise AuditLogIsAppendOnly("Audit events cannot be changed.")

    def delete(self):
        raise AuditLogIsAppendOnly("Audit events cannot be deleted (only purged after WVD_AUDIT_RETENTION_DAYS).")

    def purge_before(self, cutoff, batch: int = 5000) -> int:
        """Delete the events recorded before ``cutoff``, a batch per statement so no transaction grows with
        the table. Returns how many."""
        deleted = 0
        while True:
            ids = list(self.filter(at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            # A plain QuerySet, past this class's refusal: the retention purge is the one deleter.
            deleted += models.QuerySet(self.model, using=self.db).filter(pk__in=ids).delete()[0]


class AuditEvent(models.Model):
    """One thing an administrator (or the system) did: who, how they signed in, what, to which object,
    which fields changed (secrets masked), when and from where (core/audit.py records them; docs/audit.md).

    The actor is kept as text (their id and name at the time), with no foreign key, so the record outlives
    the account; so is the object. Rows are never updated or deleted through the ORM (AuditEventQuerySet).
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=40, choices=AuditAction.choices, db_index=True)
    result = models.CharField(max_length=20, default="ok",
                              help_text="ok, or what a host command got instead: failed, unsupported, offline, "
                                        "timeout.")
    actor_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True,
                                              help_text="The user's id; empty for the system.")
    actor_name = models.CharField(max_length=150, blank=True, help_text="The user's name at the time.")
    credential = models.CharField(max_length=20, choices=AuditCredential.choices, default=AuditCredential.NONE)
    token_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="The API token used, if any.")
    token_name = models.CharField(max_length=220, blank=True, help_text="Its prefix and description.")
    surface = models.CharField(max_length=20, choices=AuditSurface.choices, default=AuditSurface.SYSTEM)
    object_type = models.CharField(max_length=100, blank=True, help_text="app_label.model, e.g. broker.sessionhost")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True,
                               help_text="Field name -> [before, after]; secrets are masked.")
    detail = models.CharField(max_length=500, blank=True)
    client_address = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True,
                                  help_text="Shared by every event of one HTTP request (its X-Request-ID answer).")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        who = self.actor_name or "system"
        return f"{self.at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.object_repr}".strip()

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AuditLogIsAppendOnly("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogIsAppendOnly("Audit events cannot be deleted (only purged after WVD_AUDIT_RETENTION_DAYS).")
