"""Workspaces, application groups, their desktops and RemoteApps, and who is assigned to them."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models.functions import Lower

from broker.models import HostPool, name_validator
from core.validators import one_line, plain_text
from feed.choices import ApplicationGroupType, CommandLineSetting
from feed.icons import IconError, validate_icon


def _clean_icon(resource: Desktop | RemoteApp, errors: dict) -> None:
    """Refuse an icon that is not a PNG or ICO image; record the content type it really has."""
    if not resource.icon:
        resource.icon, resource.icon_content_type = None, ""
        return
    try:
        resource.icon_content_type = validate_icon(bytes(resource.icon))
    except IconError as exc:
        errors["icon"] = str(exc)


class Workspace(models.Model):
    """What a user subscribes to: groups application groups for the feed."""

    name = models.CharField(max_length=63, validators=[name_validator])
    friendly_name = models.CharField(max_length=200, blank=True, help_text="Shown in clients.",
                                     validators=[one_line])
    description = models.TextField(blank=True, validators=[plain_text])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="workspace_name_unique_ci",
                                    violation_error_message="A workspace with this name already exists."),
        ]

    def __str__(self) -> str:
        return self.friendly_name or self.name

    @property
    def display_name(self) -> str:
        return self.friendly_name or self.name


class ApplicationGroup(models.Model):
    """A desktop group (exactly one Desktop) or a RemoteApp group, in one pool and at most one workspace."""

    name = models.CharField(max_length=63, validators=[name_validator])
    friendly_name = models.CharField(max_length=200, blank=True, validators=[one_line])
    description = models.TextField(blank=True, validators=[plain_text])
    group_type = models.CharField(max_length=16, choices=ApplicationGroupType.choices)
    host_pool = models.ForeignKey(HostPool, on_delete=models.PROTECT, related_name="application_groups")
    workspace = models.ForeignKey(
        Workspace, on_delete=models.SET_NULL, null=True, blank=True, related_name="application_groups"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="applicationgroup_name_unique_ci",
                                    violation_error_message="An application group with this name already exists."),
            models.CheckConstraint(condition=models.Q(group_type__in=ApplicationGroupType.values),
                                   name="applicationgroup_type_valid"),
        ]

    def __str__(self) -> str:
        return self.friendly_name or self.name

    @property
    def is_desktop(self) -> bool:
        return self.group_type == ApplicationGroupType.DESKTOP

    def clean(self) -> None:
        errors = {}
        if self.pk is not None:
            stored = ApplicationGroup.objects.filter(pk=self.pk).values_list("group_type", flat=True).first()
            if stored is not None and stored != self.group_type:
                errors["group_type"] = "An application group's type cannot change after it is created."
        if self.group_type == ApplicationGroupType.REMOTEAPP and self.host_pool_id:
            if self.host_pool.is_personal:
                errors["host_pool"] = "RemoteApp groups can only use a pooled host pool."
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs) -> None:
        # A desktop group is born with its one Desktop, in the same transaction.
        creating = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if creating and self.is_desktop:
                Desktop.objects.create(application_group=self, friendly_name=self.friendly_name or "Session Desktop")


class Assignment(models.Model):
    """A user or a group assigned to an application group."""

    application_group = models.ForeignKey(ApplicationGroup, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="assignments"
    )
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="assignments")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["application_group__name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(user__isnull=False, group__isnull=True)
                           | models.Q(user__isnull=True, group__isnull=False)),
                name="assignment_user_xor_group",
                violation_error_message="Assign either a user or a group, not both or neither.",
            ),
            models.UniqueConstraint(fields=["application_group", "user"], condition=models.Q(user__isnull=False),
                                    name="assignment_unique_user",
                                    violation_error_message="This user is already assigned to the group."),
            models.UniqueConstraint(fields=["application_group", "group"], condition=models.Q(group__isnull=False),
                                    name="assignment_unique_group",
                                    violation_error_message="This group is already assigned to the group."),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.group} → {self.application_group}"


class Desktop(models.Model):
    """The one desktop of a desktop application group; created and deleted with its group."""

    application_group = models.OneToOneField(ApplicationGroup, on_delete=models.CASCADE, related_name="desktop")
    friendly_name = models.CharField(max_length=200, default="Session Desktop", validators=[one_line])
    description = models.TextField(blank=True, validators=[plain_text])
    icon = models.BinaryField(null=True, blank=True, editable=True)
    icon_content_type = models.CharField(max_length=40, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["application_group__name"]

    def __str__(self) -> str:
        return self.friendly_name

    def clean(self) -> None:
        errors = {}
        if self.application_group_id and not self.application_group.is_desktop:
            errors["application_group"] = "A Desktop belongs to a desktop application group."
        _clean_icon(self, errors)
        if errors:
            raise ValidationError(errors)


class RemoteApp(models.Model):
    """A published program in a RemoteApp application group."""

    application_group = models.ForeignKey(ApplicationGroup, on_delete=models.CASCADE, related_name="remote_apps")
    name = models.CharField(max_length=63, validators=[name_validator], help_text="Alias, stable in the feed.")
    friendly_name = models.CharField(max_length=200, validators=[one_line])
    description = models.TextField(blank=True, validators=[plain_text])
    file_path = models.CharField(max_length=500, help_text="Program path on the session host.",
                                 validators=[one_line])
    command_line_setting = models.CharField(
        max_length=16, choices=CommandLineSetting.choices, default=CommandLineSetting.DO_NOT_ALLOW
    )
    command_line_arguments = models.CharField(max_length=500, blank=True, validators=[one_line])
    file_extensions = models.CharField(max_length=500, blank=True, help_text="e.g. .txt,.log",
                                       validators=[one_line])
    show_in_feed = models.BooleanField(default=True)
    icon = models.BinaryField(null=True, blank=True, editable=True)
    icon_content_type = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["application_group__name", "name"]
        constraints = [
            models.UniqueConstraint("application_group", Lower("name"), name="remoteapp_name_unique_in_group_ci",
                                    violation_error_message="This group already has a RemoteApp with this name."),
            models.CheckConstraint(
                condition=~models.Q(command_line_setting=CommandLineSetting.REQUIRE)
                | ~models.Q(command_line_arguments=""),
                name="remoteapp_required_arguments_given",
                violation_error_message="Give the arguments when they are required.",
            ),
        ]

    def __str__(self) -> str:
        return self.friendly_name

    def clean(self) -> None:
        errors = {}
        if self.application_group_id and self.application_group.is_desktop:
            errors["application_group"] = "RemoteApps belong to a RemoteApp application group."
        _clean_icon(self, errors)
        if errors:
            raise ValidationError(errors)
