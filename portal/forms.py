"""The portal's forms. Model forms validate with the model's own rules (full_clean), so the portal
refuses exactly what the model refuses, with the model's messages, and keeps what the admin typed."""
from __future__ import annotations

import uuid
from datetime import datetime

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from broker.models import HostPool
from core.models import RoleAssignment
from feed.icons import MAX_ICON_BYTES
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace
from wire.errors import ERRORS

SEARCH_MAX = 150


class ModelRulesForm(forms.ModelForm):
    """A ModelForm that, once its own fields are valid, runs the model's full_clean() over the whole
    object: rules about fields the form does not show (a type fixed at creation) are checked too and
    reported for the form as a whole."""

    def _post_clean(self) -> None:
        super()._post_clean()  # the form's fields, the model's clean(), unique and constraint checks
        if self.errors:
            return
        try:
            self.instance.full_clean()
        except ValidationError as exc:
            self._update_errors(exc)

    def _update_errors(self, errors: ValidationError) -> None:
        if hasattr(errors, "error_dict"):
            regrouped: dict[str, list] = {}
            for name, field_errors in errors.error_dict.items():
                target = name if name == NON_FIELD_ERRORS or name in self.fields else NON_FIELD_ERRORS
                regrouped.setdefault(target, []).extend(field_errors)
            errors = ValidationError(regrouped)
        super()._update_errors(errors)


class IconField(forms.FileField):
    """A PNG or ICO upload, read into memory only below the feed's size limit."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", f"PNG or ICO, up to {MAX_ICON_BYTES // 1024} KiB. Leave empty to keep the "
                                       "current icon.")
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("accept", ".png,.ico,image/png,image/x-icon")

    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if not upload:
            return None
        if upload.size > MAX_ICON_BYTES:
            raise ValidationError(f"The icon is {upload.size // 1024} KiB; the limit is {MAX_ICON_BYTES // 1024} KiB.")
        return upload.read()


class _WithIcon(ModelRulesForm):
    icon_upload = IconField(label="Icon")
    remove_icon = forms.BooleanField(required=False, label="Use the default icon")

    def clean(self):
        cleaned = super().clean()
        # Set before the model's clean(), which checks the image (feed.icons.validate_icon).
        if cleaned.get("icon_upload"):
            self.instance.icon = cleaned["icon_upload"]
        elif cleaned.get("remove_icon"):
            self.instance.icon = None
        return cleaned

    def _update_errors(self, errors: ValidationError) -> None:
        # The model reports a bad image under "icon"; the form's field is the upload.
        if hasattr(errors, "error_dict") and "icon" in errors.error_dict:
            error_dict = dict(errors.error_dict)
            error_dict["icon_upload"] = error_dict.pop("icon")
            errors = ValidationError(error_dict)
        super()._update_errors(errors)


class HostPoolForm(ModelRulesForm):
    class Meta:
        model = HostPool
        fields = ["name", "friendly_name", "description", "pool_type", "load_balancer", "personal_assignment",
                  "max_session_limit", "start_vm_on_connect", "custom_rdp_properties"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2}),
                   "custom_rdp_properties": forms.Textarea(attrs={"rows": 4, "class": "mono",
                                                                  "placeholder": "audiomode:i:0"})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            # Fixed at creation (HostPool.clean says why); shown, not editable.
            self.fields["pool_type"].disabled = True
            self.fields["pool_type"].help_text = "Fixed when the pool is created."


class WorkspaceForm(ModelRulesForm):
    class Meta:
        model = Workspace
        fields = ["name", "friendly_name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class ApplicationGroupForm(ModelRulesForm):
    class Meta:
        model = ApplicationGroup
        fields = ["name", "friendly_name", "description", "group_type", "host_pool", "workspace"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        help_texts = {"workspace": "Only groups in a workspace are published to users."}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["host_pool"].queryset = HostPool.objects.order_by("name")
        self.fields["workspace"].queryset = Workspace.objects.order_by("name")
        if self.instance.pk is not None:
            self.fields["group_type"].disabled = True
            self.fields["group_type"].help_text = "Fixed when the group is created."


class DesktopForm(_WithIcon):
    class Meta:
        model = Desktop
        fields = ["friendly_name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class RemoteAppForm(_WithIcon):
    """Its application group is the view's to set (ObjectEditView.parent_field), before validation."""

    class Meta:
        model = RemoteApp
        fields = ["name", "friendly_name", "description", "file_path", "command_line_setting",
                  "command_line_arguments", "file_extensions", "show_in_feed"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class AssignmentForm(ModelRulesForm):
    """Assign a user or a group, by name (the picker fills the name in; typing it works too). The application
    group is the view's to set (ObjectEditView.parent_field), before validation."""

    kind = forms.ChoiceField(choices=[("user", "User"), ("group", "Group")], initial="user",
                             widget=forms.RadioSelect)
    principal = forms.CharField(max_length=150, label="Name",
                                help_text="Start typing to search users or groups.")

    class Meta:
        model = Assignment
        fields: list[str] = []

    def clean(self):
        cleaned = super().clean()
        kind, name = cleaned.get("kind"), (cleaned.get("principal") or "").strip()
        if not kind or not name:
            return cleaned
        if kind == "user":
            user = get_user_model().objects.filter(username__iexact=name).first()
            if user is None:
                self.add_error("principal", f"There is no user named “{name}”.")
            self.instance.user, self.instance.group = user, None
        else:
            group = Group.objects.filter(name__iexact=name).first()
            if group is None:
                self.add_error("principal", f"There is no group named “{name}”.")
            self.instance.user, self.instance.group = None, group
        return cleaned


class MessageForm(forms.Form):
    title = forms.CharField(max_length=100, initial="Message from your administrator")
    text = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 4}))


class SessionSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=SEARCH_MAX, label="User or host")


def _error_code_choices() -> list[tuple[str, str]]:
    return [("", "Any error code"), ("any", "Any failure")] + [(code, code) for code in sorted(ERRORS)]


class ConnectionSearchForm(forms.Form):
    user = forms.CharField(required=False, max_length=SEARCH_MAX)
    activity = forms.CharField(required=False, max_length=36, label="Activity id")
    error = forms.ChoiceField(required=False, label="Error code", choices=_error_code_choices)
    since = forms.DateTimeField(required=False, label="From (UTC)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"])
    until = forms.DateTimeField(required=False, label="To (UTC)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"])

    def clean_activity(self) -> uuid.UUID | None:
        value = self.cleaned_data["activity"].strip()
        if not value:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValidationError("An activity id looks like 3f2b6c1e-8d4a-4f7e-9c1b-2a5d6e7f8a9b.") from None

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if isinstance(since, datetime) and isinstance(until, datetime) and since > until:
            self.add_error("until", "The end is before the start.")
        return cleaned


class RoleAssignmentForm(ModelRulesForm):
    """Give a role (docs/roles.md) to a user or a group, typed by name, at a scope."""

    user = forms.ModelChoiceField(queryset=get_user_model().objects.all(), to_field_name="username", required=False,
                                  widget=forms.TextInput, help_text="A user name; or leave empty and give a group.")
    group = forms.ModelChoiceField(queryset=Group.objects.all(), to_field_name="name", required=False,
                                   widget=forms.TextInput, help_text="A group name (a directory group too).")

    class Meta:
        model = RoleAssignment
        fields = ["role", "user", "group", "scope_type", "scope_id"]
        help_texts = {"scope_id": "The id of the workspace, host pool or application group; empty for everything."}
