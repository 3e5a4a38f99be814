"""Assignments taken away end access at once: the users who lose one (directly, or as members of the
assigned group) get an access change (core/access.py), so the connection files they hold stop working.
Connected by FeedConfig.ready(); deleting an application group or a user deletes its assignments and
lands here too.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, pre_save

from core.access import access_changed
from feed.models import Assignment


def _users_of(assignment: Assignment) -> list[int]:
    if assignment.user_id is not None:
        return [assignment.user_id]
    if assignment.group_id is not None:
        return list(get_user_model().objects.filter(groups__pk=assignment.group_id).values_list("pk", flat=True))
    return []


def _assignment_deleted(sender, instance: Assignment, **kwargs) -> None:
    access_changed(_users_of(instance), "unassigned")


def _assignment_changing(sender, instance: Assignment, raw: bool = False, **kwargs) -> None:
    """An assignment edited in place to someone or something else takes it from whoever had it."""
    if raw or instance.pk is None:
        return
    before = Assignment.objects.filter(pk=instance.pk).first()
    if before is not None and (before.user_id, before.group_id, before.application_group_id) != (
            instance.user_id, instance.group_id, instance.application_group_id):
        access_changed(_users_of(before), "assignment changed")


def connect() -> None:
    post_delete.connect(_assignment_deleted, sender=Assignment, dispatch_uid="wvd-access-unassigned")
    pre_save.connect(_assignment_changing, sender=Assignment, dispatch_uid="wvd-access-assignment-changing")
