"""Where each object lies among the scopes roles are given at: the seam the apps fill in.

A role assignment's scope is a workspace, a host pool or an application group, and those live in the apps
above core (feed, broker), which core may not import. So each app registers, from its AppConfig.ready, its
scope models (``register_scope``) and, for each model a role can reach, its kind (core/roles.py's KINDS) and
the lookup from it to each scope's id (``register_object``): a session host lies in the host pool
``host_pool_id``, a RemoteApp in the application group ``application_group_id``, the workspace
``application_group__workspace_id`` and the host pool ``application_group__host_pool_id``. core.authorization
turns those lookups into queryset filters and checks on one object, so both answers come from one table.
A model nobody registered is reachable by superusers only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.apps import apps
from django.db.models import Model
from django.db.models.signals import post_delete

from core.roles import KINDS, ScopeType

_scope_models: dict[str, type[Model]] = {}


@dataclass
class ObjectKind:
    kind: str
    paths: dict[str, str] = field(default_factory=dict)  # scope type -> lookup of the scope's id ("pk": itself)


_objects: dict[type[Model], ObjectKind] = {}


def register_scope(scope_type: str, model: type[Model]) -> None:
    """``model`` is the scope ``scope_type`` names; deleting one of its rows deletes the assignments at it."""
    if scope_type not in ScopeType.values or scope_type == ScopeType.ALL:
        raise ValueError(f"not a scope type: {scope_type}")
    _scope_models[scope_type] = model
    post_delete.connect(_forget_assignments, sender=model, dispatch_uid=f"roles-forget-{scope_type}")


def register_object(model: type[Model], kind: str | None = None, **paths: str) -> None:
    """``model``'s kind (once, by its own app) and lookups to scopes (by any app that knows the way)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"not a kind of object: {kind}")
    unknown = set(paths) - set(ScopeType.values)
    if unknown:
        raise ValueError(f"not scope types: {sorted(unknown)}")
    entry = _objects.setdefault(model, ObjectKind(kind or ""))
    if kind is not None:
        entry.kind = kind
    entry.paths.update(paths)


def object_kind(model: type[Model]) -> ObjectKind | None:
    entry = _objects.get(model)
    return entry if entry is not None and entry.kind else None


def scope_model(scope_type: str) -> type[Model] | None:
    return _scope_models.get(scope_type)


def scope_exists(scope_type: str, scope_id: int) -> bool:
    model = _scope_models.get(scope_type)
    return model is not None and model._default_manager.filter(pk=scope_id).exists()


def value_on(obj: Model, lookup: str):
    """The scope id ``lookup`` reaches from ``obj`` (saved or not): ``application_group__workspace_id`` ->
    ``obj.application_group.workspace_id``; None where a link is empty."""
    if lookup == "pk":
        return obj.pk
    value = obj
    for name in lookup.split("__"):
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def _forget_assignments(sender, instance, **kwargs) -> None:
    scope_type = next((name for name, model in _scope_models.items() if model is sender), None)
    if scope_type is not None:
        apps.get_model("wvdportal", "RoleAssignment").objects.filter(
            scope_type=scope_type, scope_id=instance.pk).delete()
