"""Django admin for workspaces, application groups, their desktops and RemoteApps, and assignments."""
from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from core.admin import RoleAdminMixin, RoleInlineMixin
from feed.choices import ApplicationGroupType
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace


def _icon_summary(obj: Desktop | RemoteApp) -> str:
    if not obj.icon:
        return "No icon"
    return f"{obj.icon_content_type or 'unknown type'}, {len(obj.icon)} bytes"


def _live_forms(formset: BaseInlineFormSet) -> list:
    """The inline's forms that will be saved: filled in and not marked for deletion."""
    return [
        form for form in formset.forms
        if form.has_changed() or form.instance.pk is not None
        if not (getattr(form, "cleaned_data", None) or {}).get("DELETE")
    ]


class AssignmentFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        # The database's partial unique indexes would refuse a repeat within one submission with a
        # server error; say it on the form instead. Rows are checked against stored ones by the model.
        seen: set[tuple[str, int]] = set()
        for form in _live_forms(self):
            data = getattr(form, "cleaned_data", None) or {}
            for kind in ("user", "group"):
                if data.get(kind) is None:
                    continue
                key = (kind, data[kind].pk)
                if key in seen:
                    raise ValidationError(f"{data[kind]} is assigned twice.")
                seen.add(key)


class AssignmentInline(RoleInlineMixin, admin.TabularInline):
    model = Assignment
    role_parent_field = "application_group"
    formset = AssignmentFormSet
    fields = ["user", "group", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user", "group"]
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Assignment]:
        return super().get_queryset(request).select_related("user", "group")


class DesktopInline(RoleInlineMixin, admin.StackedInline):
    """A desktop group's one Desktop: it comes and goes with the group, so it is only edited here."""

    model = Desktop
    role_parent_field = "application_group"
    fields = ["friendly_name", "description", "icon_summary", "updated_at"]
    readonly_fields = ["icon_summary", "updated_at"]
    extra = 0
    max_num = 1

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Icon")
    def icon_summary(self, desktop: Desktop) -> str:
        return _icon_summary(desktop)


class RemoteAppFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        live = _live_forms(self)
        # On the add page the group's type is chosen in the same submission as its RemoteApps.
        if live and self.instance.group_type == ApplicationGroupType.DESKTOP:
            raise ValidationError("RemoteApps belong to a RemoteApp application group; this is a desktop group.")
        names: set[str] = set()
        for form in live:
            name = (getattr(form, "cleaned_data", None) or {}).get("name")
            if not name:
                continue
            if name.lower() in names:
                raise ValidationError(f"The name {name} is used twice (names ignore case).")
            names.add(name.lower())


class RemoteAppInline(RoleInlineMixin, admin.TabularInline):
    model = RemoteApp
    role_parent_field = "application_group"
    formset = RemoteAppFormSet
    fields = ["name", "friendly_name", "file_path", "command_line_setting", "command_line_arguments",
              "show_in_feed"]
    show_change_link = True
    extra = 0


@admin.register(Workspace)
class WorkspaceAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["name", "friendly_name", "group_count", "updated_at"]
    list_filter = [("application_groups", admin.EmptyFieldListFilter), "updated_at"]
    search_fields = ["name", "friendly_name", "description"]
    ordering = ["name"]
    fields = ["name", "friendly_name", "description", "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workspace]:
        return super().get_queryset(request).annotate(group_count=Count("application_groups"))

    @admin.display(description="Application groups", ordering="group_count")
    def group_count(self, workspace: Workspace) -> int:
        return workspace.group_count


@admin.register(ApplicationGroup)
class ApplicationGroupAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["name", "friendly_name", "group_type", "host_pool", "workspace", "assignment_count", "updated_at"]
    list_filter = ["group_type", "host_pool", "workspace"]
    search_fields = ["name", "friendly_name", "description", "host_pool__name", "workspace__name"]
    ordering = ["name"]
    list_select_related = ["host_pool", "workspace"]
    autocomplete_fields = ["host_pool", "workspace"]
    fields = ["name", "friendly_name", "description", "group_type", "host_pool", "workspace",
              "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApplicationGroup]:
        return super().get_queryset(request).annotate(assignment_count=Count("assignments"))

    def get_deleted_objects(self, objs, request: HttpRequest):
        # The Desktop goes with its group; it cannot be deleted on its own, which would otherwise make
        # the admin refuse to delete the group for want of permission on it.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(Desktop._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def get_readonly_fields(self, request, obj=None):
        # A desktop group owns a Desktop, a RemoteApp group owns RemoteApps: the type is fixed at creation.
        return [*self.readonly_fields, "group_type"] if obj is not None else self.readonly_fields

    def get_inlines(self, request, obj):
        if obj is None:
            return [RemoteAppInline, AssignmentInline]
        if obj.is_desktop:
            return [DesktopInline, AssignmentInline]
        return [RemoteAppInline, AssignmentInline]

    @admin.display(description="Assignments", ordering="assignment_count")
    def assignment_count(self, group: ApplicationGroup) -> int:
        return group.assignment_count


@admin.register(Desktop)
class DesktopAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["friendly_name", "application_group", "host_pool", "workspace", "updated_at"]
    list_filter = ["application_group__host_pool", "application_group__workspace"]
    search_fields = ["friendly_name", "description", "application_group__name"]
    ordering = ["application_group__name"]
    list_select_related = ["application_group__host_pool", "application_group__workspace"]
    fields = ["application_group", "friendly_name", "description", "icon_summary", "updated_at"]
    readonly_fields = ["application_group", "icon_summary", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Every desktop group is created with its Desktop.

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # Deleted with its group.

    @admin.display(description="Host pool", ordering="application_group__host_pool__name")
    def host_pool(self, desktop: Desktop):
        return desktop.application_group.host_pool

    @admin.display(description="Workspace", ordering="application_group__workspace__name")
    def workspace(self, desktop: Desktop):
        return desktop.application_group.workspace

    @admin.display(description="Icon")
    def icon_summary(self, desktop: Desktop) -> str:
        return _icon_summary(desktop)


@admin.register(RemoteApp)
class RemoteAppAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["name", "friendly_name", "application_group", "file_path", "command_line_setting",
                    "show_in_feed"]
    list_filter = ["show_in_feed", "command_line_setting", "application_group"]
    search_fields = ["name", "friendly_name", "file_path", "application_group__name"]
    ordering = ["application_group__name", "name"]
    list_select_related = ["application_group"]
    fieldsets = [
        (None, {"fields": ["application_group", "name", "friendly_name", "description", "show_in_feed"]}),
        ("Program", {"fields": ["file_path", "command_line_setting", "command_line_arguments",
                                "file_extensions"]}),
        ("Details", {"fields": ["icon_summary", "created_at", "updated_at"]}),
    ]
    readonly_fields = ["icon_summary", "created_at", "updated_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "application_group":
            kwargs["queryset"] = ApplicationGroup.objects.filter(group_type=ApplicationGroupType.REMOTEAPP)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="Icon")
    def icon_summary(self, app: RemoteApp) -> str:
        return _icon_summary(app)


class AssigneeKindFilter(admin.SimpleListFilter):
    title = "assigned to"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("user", "Users"), ("group", "Groups")]

    def queryset(self, request, queryset):
        if self.value() == "user":
            return queryset.filter(user__isnull=False)
        if self.value() == "group":
            return queryset.filter(group__isnull=False)
        return queryset


@admin.register(Assignment)
class AssignmentAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["application_group", "assignee", "kind", "created_at"]
    list_filter = ["application_group__group_type", AssigneeKindFilter, "application_group"]
    search_fields = ["user__username", "user__email", "group__name", "application_group__name"]
    ordering = ["application_group__name", "id"]
    list_select_related = ["application_group", "user", "group"]
    autocomplete_fields = ["application_group", "user", "group"]
    fields = ["application_group", "user", "group", "created_at"]
    readonly_fields = ["created_at"]

    @admin.display(description="Assigned to")
    def assignee(self, assignment: Assignment) -> str:
        return str(assignment.user or assignment.group)

    @admin.display(description="Kind")
    def kind(self, assignment: Assignment) -> str:
        return "User" if assignment.user_id else "Group"
