"""The Django admin's site: Django's own, except that every ModelAdmin registered on it records its adds,
changes and deletes in the audit log (core/audit.py), in the transaction of the change.

It is the default site (``core.adminconfig.AuditedAdminConfig`` in INSTALLED_APPS), so ``admin.site`` and
``@admin.register`` in every app use it, and a model admin added later (role assignments, say) is audited
without code of its own. Admin actions that change more than a form does record their own verb (drain,
token revoke, log off, ...) where the change is made: the model's method or the host command.
"""
from __future__ import annotations

from django.contrib import admin
from django.db import models, transaction
from django.forms import ModelForm
from django.http import HttpRequest

from core import audit
from core.choices import AuditAction


class AuditedModelAdmin:
    """Mixed in front of each registered ModelAdmin by ``AuditedAdminSite.register``."""

    def save_model(self, request: HttpRequest, obj: models.Model, form: ModelForm, change: bool) -> None:
        # The form has already applied the new values to obj: the stored row is what it was before.
        form._audit_before = audit.saved_state(obj) if change else None
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: ModelForm, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # After the many-to-many fields are saved (a user's groups), still inside the admin's transaction.
        audit.record_saved(form.instance, getattr(form, "_audit_before", None), request=request,
                           extra_changes=audit.many_to_many_changes(form))
        # Saved with no change of its own (only its inlines changed): its history line is no event either.
        audit.mark_recorded(request, form.instance)

    def save_formset(self, request: HttpRequest, form: ModelForm, formset, change: bool) -> None:
        """An inline's rows (a group's assignments, a pool's hosts): each added, changed or deleted one."""
        deleted = [f.instance for f in formset.deleted_forms if f.instance.pk is not None]
        for obj in deleted:  # before: a deleted object has no id afterwards
            audit.record_deleted(obj, request=request)
        before = {f.instance.pk: audit.saved_state(f.instance) for f in formset.initial_forms
                  if f.instance.pk is not None and f not in formset.deleted_forms and f.has_changed()}
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            audit.record_saved(obj, None, request=request)
        for obj, _ in formset.changed_objects:
            audit.record_saved(obj, before.get(obj.pk), request=request)

    def log_change(self, request: HttpRequest, obj: models.Model, message):
        """Django's change history; and, for a change no other hook recorded in this request (a password set
        on its own page, an action that only logs), a "change" event with the history's words."""
        entry = super().log_change(request, obj, message)
        if not audit.recorded_in(request, obj):
            text = entry.get_change_message() if entry is not None else str(message)
            audit.record(AuditAction.CHANGE, obj, detail=text, request=request)
        return entry

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        with transaction.atomic():
            audit.record_deleted(obj, request=request)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        with transaction.atomic():  # the "delete selected" action runs outside the admin's own transaction
            for obj in queryset:
                audit.record_deleted(obj, request=request)
            super().delete_queryset(request, queryset)


class AuditedAdminSite(admin.AdminSite):
    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, AuditedModelAdmin):
            admin_class = type(admin_class.__name__, (AuditedModelAdmin, admin_class),
                               {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__})
        super().register(model_or_iterable, admin_class, **options)
