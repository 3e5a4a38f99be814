"""Django admin for the shared models (certificates, API tokens, the audit log) and the helpers every app's
admin uses."""
from __future__ import annotations

import logging
from datetime import UTC, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from core import audit
from core import scopes
from core.authorization import ADD, CHANGE, DELETE, VIEW, action_for, grants_for_request
from core.pickers import limit_field
from core.choices import AuditAction
from core.models import (
    ApiToken,
    AuditEvent,
    Certificate,
    DirectoryAccount,
    OidcAccount,
    OidcGroup,
    RevokedTicket,
    RoleAssignment,
    UserAccessChange,
)
from core.signin import AdminSignInForm

logger = logging.getLogger(__name__)

admin.site.site_header = "WVD control plane"
admin.site.site_title = "WVD control plane"
admin.site.index_title = "Administration"
# A directory that could not answer is said so, not taken for a wrong password (core/directory.py).
admin.site.login_form = AdminSignInForm


class RolePickersMixin:
    """An admin page's pickers (its foreign keys and many-to-many fields, its inlines' too) and the sidebar's
    filters by a related object name only what the user may see (core/pickers.py). A picker searched through
    another admin (autocomplete) stays one only for users who read that kind everywhere: the search answers
    from what they may read, and would miss what the page may also offer (their role's own scope, the current
    value); everyone else gets a plain list of what they may pick."""

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return limit_field(field, self.model, db_field.name, grants_for_request(request)) if field else field

    def formfield_for_manytomany(self, db_field, request: HttpRequest, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        return limit_field(field, self.model, db_field.name, grants_for_request(request)) if field else field

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        grants = grants_for_request(request)
        return [name for name in super().get_autocomplete_fields(request)
                if scopes.object_kind(self.model._meta.get_field(name).related_model) is None
                or grants.everywhere(action_for(self.model._meta.get_field(name).related_model, VIEW))]


class ReadableRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """The sidebar's filter by a related object: the objects the user may pick (``Grants.choices``)."""

    def field_choices(self, field, request: HttpRequest, model_admin) -> list[tuple]:
        related = field.related_model._default_manager.all()
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            related = related.order_by(*ordering)
        offered = grants_for_request(request).choices(related, model_admin.model, self.field_path)
        return [(obj.pk, str(obj)) for obj in offered]


class RoleAdminMixin(RolePickersMixin):
    """The admin of a model the roles reach (core/scopes.py): its lists hold what the user's roles let them
    read, each page and button needs the action held on the object (``<kind>.<verb>``), an object saved must
    lie where the roles allow it (no creating outside the scope, no moving out of it), and each action runs
    only on the selected objects its permission's verb is held on (``permissions=["drain"]`` needs
    ``sessionhost.drain``; its ``has_drain_permission`` comes from ``role_verbs``). Staff status opens the
    admin (Django's gate); the roles say what is in it. Superusers hold everything."""

    role_verbs: tuple[str, ...] = ()  # custom action permissions, each a verb of the model's kind

    def _holds(self, request: HttpRequest, verb: str, obj=None) -> bool:
        grants = grants_for_request(request)
        action = action_for(self.model, verb)
        return grants.allows(action, obj) if obj is not None else grants.anywhere(action)

    def __getattr__(self, name: str):
        # has_<verb>_permission(request) for the verbs in role_verbs, which admin.action(permissions=...) asks.
        verb = name.removeprefix("has_").removesuffix("_permission")
        if name.startswith("has_") and name.endswith("_permission") and verb in type(self).role_verbs:
            return lambda request, obj=None: self._holds(request, verb, obj)
        raise AttributeError(name)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return grants_for_request(request).readable(super().get_queryset(request))

    def get_list_filter(self, request: HttpRequest):
        """A filter by a related object (``"host_pool"``, ``"session_host__host_pool"``) lists what the user
        may pick."""
        return [(entry, ReadableRelatedFieldListFilter) if isinstance(entry, str) and self._is_relation(entry)
                else entry for entry in super().get_list_filter(request)]

    def _is_relation(self, path: str) -> bool:
        model = self.model
        for name in path.split("__"):
            field = model._meta.get_field(name)
            if not field.is_relation:
                return False
            model = field.related_model
        return True

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._holds(request, VIEW)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._holds(request, VIEW, obj)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._holds(request, ADD)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._holds(request, CHANGE, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._holds(request, DELETE, obj)

    def save_form(self, request: HttpRequest, form, change: bool):
        obj = super().save_form(request, form, change)
        if not self._holds(request, CHANGE if change else ADD, obj):
            raise PermissionDenied("None of your roles allows this object there.")
        return obj

    def get_actions(self, request: HttpRequest) -> dict:
        """Each action runs on the selected objects its permissions' verbs are held on; the rest are left
        alone and said so."""
        return {name: (self._scoped(func), name, description)
                for name, (func, name, description) in super().get_actions(request).items()}

    def _scoped(self, func):
        verbs = getattr(func, "allowed_permissions", ()) or (CHANGE,)

        def run(modeladmin, request, queryset):
            grants = grants_for_request(request)
            allowed = queryset
            for verb in verbs:
                allowed = grants.filter(allowed, action_for(self.model, verb))
            skipped = queryset.count() - allowed.count()
            if skipped:
                self.message_user(request, f"{skipped} selected object(s) left alone: none of your roles allows "
                                  "this action on them.", messages.WARNING)
            return func(modeladmin, request, allowed)

        for attribute in ("short_description", "allowed_permissions", "__name__"):
            if hasattr(func, attribute):
                setattr(run, attribute, getattr(func, attribute))
        return run


class RoleInlineMixin(RolePickersMixin):
    """An inline of a model the roles reach: what it may show and do follows the roles on the parent's
    scope (``role_parent_field``, the inline model's foreign key to the parent)."""

    role_parent_field = ""

    def _holds(self, request: HttpRequest, verb: str, parent=None) -> bool:
        grants = grants_for_request(request)
        action = action_for(self.model, verb)
        if parent is None:
            return grants.anywhere(action)
        return grants.allows(action, self.model(**{self.role_parent_field: parent}))

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return grants_for_request(request).readable(super().get_queryset(request))

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._holds(request, VIEW, obj)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._holds(request, ADD, obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._holds(request, CHANGE, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._holds(request, DELETE, obj)


class SuperuserOnlyAdminMixin:
    """Models no role reaches (users and groups, API tokens, tickets, role assignments): superusers only,
    whatever Django model permissions a staff user holds (docs/roles.md)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)


class ReadOnlyAdminMixin:
    """Records written by the system (connections, sessions, certificates): viewable, never edited here."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def show_secrets_once(
    model_admin: admin.ModelAdmin, request: HttpRequest, *, title: str, back_url: str, back_label: str
) -> TemplateResponse:
    """Render the messages queued in this request (they hold secrets) on a page of their own.

    The default after an action or an add is a redirect, which parks the messages in a cookie or, when
    they overflow it, in the session table: a secret would then sit in clear outside the response that
    shows it. Rendering them in this very response consumes them, so nothing is stored anywhere.
    """
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "content": format_html('<p><a class="button" href="{}">{}</a></p>', back_url, back_label),
    }
    response = TemplateResponse(request, "admin/base_site.html", context)
    add_never_cache_headers(response)
    return response


@admin.register(Certificate)
class CertificateAdmin(ReadOnlyAdminMixin, RoleAdminMixin, admin.ModelAdmin):
    # Certificates are only ever written by the CA (core/ca.py). A "revoke" action calling the CA's
    # revoke() can be added to `actions`; give it a custom permission, since change is refused here.
    list_display = ["common_name", "purpose", "serial_number", "not_before", "not_after", "is_revoked", "issued_at"]
    list_filter = ["purpose", ("revoked_at", admin.EmptyFieldListFilter), "not_after", "issued_at"]
    search_fields = ["common_name", "subject", "=serial_number", "=fingerprint_sha256"]
    ordering = ["-issued_at", "-id"]
    date_hierarchy = "issued_at"
    list_select_related = ["renewed_by"]
    fieldsets = [
        (None, {"fields": ["common_name", "subject", "purpose", "serial_number", "fingerprint_sha256"]}),
        ("Validity", {"fields": ["not_before", "not_after", "issued_at", "validity_state"]}),
        ("Revocation and renewal", {"fields": ["revoked_at", "revocation_reason", "renewed_by", "renews_link"]}),
        ("Certificate", {"fields": ["pem"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["validity_state", "renews_link"]

    @admin.display(boolean=True, description="Revoked", ordering="revoked_at")
    def is_revoked(self, certificate: Certificate) -> bool:
        return certificate.is_revoked

    @admin.display(description="State")
    def validity_state(self, certificate: Certificate) -> str:
        now = timezone.now()
        if certificate.revoked_at is not None:
            return f"Revoked {certificate.revoked_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        if now < certificate.not_before:
            return "Not valid yet"
        if now >= certificate.not_after:
            return "Expired"
        return f"Valid, {(certificate.not_after - now).days} days left"

    @admin.display(description="Renews")
    def renews_link(self, certificate: Certificate) -> str:
        previous = Certificate.objects.filter(renewed_by=certificate).first()
        if previous is None:
            return "-"
        url = reverse("admin:wvdportal_certificate_change", args=[previous.pk])
        return format_html('<a href="{}">{}</a>', url, previous)


class ApiTokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("usable", "Usable"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "usable":
            return queryset.usable()
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ApiTokenCreationForm(forms.ModelForm):
    """Issues a token through ApiToken.issue(), which makes the key; the admin never sees or sets its hash."""

    lifetime_hours = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=24 * 365 * 5,
        help_text="Leave empty for a token that does not expire.",
    )

    class Meta:
        model = ApiToken
        fields = ["user", "description"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["lifetime_hours"].initial = int(settings.API_TOKEN_DEFAULT_LIFETIME.total_seconds() // 3600)

    def save(self, commit: bool = True) -> ApiToken:
        # The record is created here whatever `commit` says: issuing is one step that makes the key
        # and stores its hash. The key rides on the instance for the one response that shows it.
        hours = self.cleaned_data.get("lifetime_hours")
        token, key = ApiToken.issue(
            self.cleaned_data["user"],
            description=self.cleaned_data["description"],
            lifetime=timedelta(hours=hours) if hours else None,
        )
        token.issued_key = key
        self.instance = token
        self.save_m2m = lambda: None
        return token


@admin.register(ApiToken)
class ApiTokenAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["prefix", "user", "description", "created_at", "expires_at", "last_used_at", "state"]
    list_filter = [ApiTokenStateFilter, "created_at"]
    search_fields = ["prefix", "description", "user__username", "user__email"]
    ordering = ["-created_at", "-id"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    actions = ["revoke_tokens"]
    add_form = ApiTokenCreationForm
    fields = ["user", "description", "prefix", "state", "created_at", "expires_at", "last_used_at", "revoked_at"]
    readonly_fields = ["user", "prefix", "state", "created_at", "expires_at", "last_used_at", "revoked_at"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "description", "lifetime_hours"]
        return self.fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
        # On add the creation form has already issued (saved) the token.

    def response_add(self, request, obj, post_url_continue=None):
        logger.info("API token %s issued for %s by %s", obj.prefix, obj.user, request.user)
        expiry = f"expires {obj.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if obj.expires_at else "does not expire"
        messages.warning(
            request,
            format_html(
                "API token for {}: <code>{}</code> ({}). Copy it now: it is not shown again.",
                obj.user, obj.issued_key, expiry,
            ),
        )
        return show_secrets_once(
            self, request, title="API token issued",
            back_url=reverse("admin:wvdportal_apitoken_change", args=[obj.pk]), back_label="Go to the token",
        )

    @admin.display(description="State")
    def state(self, token: ApiToken) -> str:
        if token.revoked_at is not None:
            return "Revoked"
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return "Expired"
        return "Usable"

    @admin.action(description="Revoke selected API tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            with transaction.atomic():
                if token.revoke():
                    audit.record(AuditAction.TOKEN_REVOKE, token, request=request)
            self.log_change(request, token, "Revoked")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API token(s).", messages.SUCCESS)



@admin.register(RevokedTicket)
class RevokedTicketAdmin(ReadOnlyAdminMixin, SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Tickets refused before their expiry (core.tickets); rows go once the ticket would have expired."""

    list_display = ["jti", "revoked_at", "expires_at"]
    list_filter = ["revoked_at", "expires_at"]
    search_fields = ["=jti"]
    ordering = ["-revoked_at", "-id"]
    date_hierarchy = "revoked_at"


@admin.register(OidcAccount)
class OidcAccountAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Users who sign in through the OIDC provider (core/oidc.py), by the provider's issuer and subject:
    created at their first sign-in, never added or edited by hand; deletable, since deleting a user deletes
    theirs (and deleting only this makes their next sign-in a new account)."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    list_display = ["user", "subject", "issuer", "signed_in_at"]
    list_filter = ["signed_in_at", "user__is_active"]
    list_select_related = ["user"]
    search_fields = ["user__username", "subject", "issuer"]


@admin.register(OidcGroup)
class OidcGroupAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Groups whose membership the OIDC provider's groups claim sets (core/oidc.py). Adding one hands a group
    to the provider (as ``manage.py oidc_groups add --adopt``); deleting one gives it back (its members stay)."""

    list_display = ["group", "created_at"]
    list_filter = ["created_at"]
    list_select_related = ["group"]
    search_fields = ["group__name"]
    fields = ["group"]


@admin.register(UserAccessChange)
class UserAccessChangeAdmin(ReadOnlyAdminMixin, SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """When each user's access last changed (core/access.py): connection tickets issued before are refused."""

    list_display = ["user_id", "user_name", "changed_at", "reason"]
    list_filter = ["changed_at", "reason"]
    search_fields = ["=user_id", "reason"]
    ordering = ["-changed_at"]
    date_hierarchy = "changed_at"

    @admin.display(description="User")
    def user_name(self, change: UserAccessChange) -> str:
        user = get_user_model().objects.filter(pk=change.user_id).first()
        return user.get_username() if user is not None else "(deleted)"


@admin.register(DirectoryAccount)
class DirectoryAccountAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Users who sign in with their directory password (core/directory.py): created at their first
    sign-in, refreshed by each sign-in and the periodic sync. Never added or edited by hand; deletable,
    since deleting a user deletes theirs."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    list_display = ["user", "dn", "synced_at"]
    list_filter = ["synced_at", "user__is_active"]
    list_select_related = ["user"]
    search_fields = ["user__username", "dn"]
    ordering = ["user__username"]


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """Who holds which role where (docs/roles.md). Only superusers give roles, as only AVD's Owner and User
    Access Administrator do."""

    list_display = ["role", "user", "group", "scope_type", "scope_id", "created_at"]
    list_filter = ["role", "scope_type"]
    search_fields = ["role", "user__username", "group__name"]
    list_select_related = ["user", "group"]
    autocomplete_fields = ["user", "group"]
    fields = ["role", "user", "group", "scope_type", "scope_id"]


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(SuperuserOnlyAdminMixin, auth_admin.GroupAdmin):
    """Django's group admin, for superusers only: a group's members hold the roles given to it."""


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, RoleAdminMixin, admin.ModelAdmin):
    """The audit log (core/audit.py): read-only here as everywhere; rows leave only by the retention purge."""

    list_display = ["at", "actor_name", "credential", "action", "result", "object_type", "object_repr",
                    "client_address", "surface"]
    list_filter = ["action", "surface", "credential", "result", "at"]
    search_fields = ["actor_name", "object_repr", "=object_id", "=request_id", "client_address"]
    ordering = ["-at", "-id"]
    date_hierarchy = "at"
    actions = None  # not even "delete selected"
