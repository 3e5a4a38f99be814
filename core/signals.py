"""What changes a user's access, as Django reports it: sign-out, a new password, deactivation, group
membership. Connected by CoreConfig.ready(); each calls core.access.access_changed, so the connection
tickets the user holds stop working (feed/signals.py does the same for assignments).

A new password also revokes the user's API tokens (sign-in tokens included): whoever knew the old password
may have made one.
"""
from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import m2m_changed, post_save, pre_delete, pre_save
from django.utils import timezone

from core.access import access_changed
from core.models import ApiToken

log = logging.getLogger(__name__)


def _signed_out(sender, request, user, **kwargs) -> None:
    if user is not None and user.pk is not None:
        access_changed([user.pk], "signed out")


def _before_user_saved(sender, instance, raw: bool = False, **kwargs) -> None:
    """Note what the save changes: set_password() leaves the new password in ``_password`` (a hash
    upgraded at sign-in does not), and an active account may be deactivated."""
    if raw or instance.pk is None:
        return
    reasons = []
    if getattr(instance, "_password", None) is not None:
        reasons.append("password changed")
    if not instance.is_active and sender.objects.filter(pk=instance.pk, is_active=True).exists():
        reasons.append("deactivated")
    instance._wvd_access_changes = reasons


def _after_user_saved(sender, instance, created: bool = False, raw: bool = False, **kwargs) -> None:
    reasons = getattr(instance, "_wvd_access_changes", None)
    if raw or not reasons:
        return
    instance._wvd_access_changes = []
    access_changed([instance.pk], ", ".join(reasons))
    if "password changed" in reasons:
        revoked = ApiToken.objects.filter(user_id=instance.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if revoked:
            log.info("revoked %d API token(s) of %s: the password changed", revoked, instance.get_username())


def _groups_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """A user joined or left groups (``reverse``: users joined or left a group)."""
    if action == "pre_clear" and reverse:
        instance._wvd_members = list(instance.user_set.values_list("pk", flat=True))
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        users = [instance.pk]
    elif action == "post_clear":
        users = getattr(instance, "_wvd_members", [])
    else:
        users = list(pk_set or ())
    access_changed(users, "group membership changed")


def _group_deleted(sender, instance, **kwargs) -> None:
    access_changed(instance.user_set.values_list("pk", flat=True), f"group {instance.name} deleted")


def connect() -> None:
    user_model = get_user_model()
    user_logged_out.connect(_signed_out, dispatch_uid="wvd-access-signed-out")
    pre_save.connect(_before_user_saved, sender=user_model, dispatch_uid="wvd-access-user-saving")
    post_save.connect(_after_user_saved, sender=user_model, dispatch_uid="wvd-access-user-saved")
    m2m_changed.connect(_groups_changed, sender=user_model.groups.through, dispatch_uid="wvd-access-groups")
    pre_delete.connect(_group_deleted, sender=Group, dispatch_uid="wvd-access-group-deleted")
