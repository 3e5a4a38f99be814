"""The one rule of who may do what: role assignments (core/models.py) read through the scopes the apps
registered (core/scopes.py).

``grants_of(user)`` loads what a user holds, directly and through their groups, in one query. On the result,
``allows(action, obj)`` answers "may this user do this action on this object" (saved or about to be), and
``filter(queryset, action)`` gives the objects of a queryset they may do it on, as one SQL filter, so a list
costs the same number of queries whatever it shows. Both read the same lookups, so they cannot disagree.

Superusers hold every action everywhere. Everybody else holds exactly what their roles give: ``is_staff`` and
Django's model permissions grant nothing here (docs/roles.md says why). A model no app registered is out
of every role's reach.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Model, Q, QuerySet

from core import scopes
from core.models import RoleAssignment
from core.roles import ROLES, ScopeType

# The verbs the REST API's and the admin's standard operations need.
VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"


@dataclass(frozen=True)
class Grants:
    """What one user holds: (role, scope type, scope id) triples, or everything for a superuser."""

    superuser: bool = False
    held: frozenset[tuple[str, str, int | None]] = field(default_factory=frozenset)

    def _scopes(self, action: str) -> tuple[bool, dict[str, set[int]]]:
        """Whether ``action`` is held at the scope 'all', and else the scope ids it is held at, by type."""
        ids: dict[str, set[int]] = {}
        for role_name, scope_type, scope_id in self.held:
            role = ROLES.get(role_name)
            if role is None or action not in role.actions:
                continue
            if scope_type == ScopeType.ALL:
                return True, {}
            ids.setdefault(scope_type, set()).add(scope_id)
        return False, ids

    def anywhere(self, action: str) -> bool:
        """Whether ``action`` is held at any scope at all (a list may then show some objects)."""
        everywhere, ids = self._scopes(action)
        return self.superuser or everywhere or bool(ids)

    def everywhere(self, action: str) -> bool:
        return self.superuser or self._scopes(action)[0]

    def allows(self, action: str, obj: Model) -> bool:
        """May the holder do ``action`` (``<kind>.<verb>``) on ``obj``? For a new object, where it would lie."""
        if self.superuser:
            return True
        kind = scopes.object_kind(type(obj))
        if kind is None or not action.startswith(f"{kind.kind}."):
            return False
        everywhere, ids = self._scopes(action)
        if everywhere:
            return True
        return any(scopes.value_on(obj, lookup) in ids.get(scope_type, ())
                   for scope_type, lookup in kind.paths.items())

    def filter(self, queryset: QuerySet, action: str) -> QuerySet:
        """The objects of ``queryset`` the holder may do ``action`` on: one WHERE clause, no extra query."""
        if self.superuser:
            return queryset
        kind = scopes.object_kind(queryset.model)
        if kind is None or not action.startswith(f"{kind.kind}."):
            return queryset.none()
        everywhere, ids = self._scopes(action)
        if everywhere:
            return queryset
        condition = Q()
        for scope_type, lookup in kind.paths.items():
            if ids.get(scope_type):
                condition |= Q(**{f"{lookup}__in": sorted(ids[scope_type])})
        return queryset.filter(condition) if condition else queryset.none()

    def readable(self, queryset: QuerySet) -> QuerySet:
        return self.filter(queryset, action_for(queryset.model, VIEW))

    def choices(self, queryset: QuerySet, model: type[Model], path: str) -> QuerySet:
        """What a picker of ``model``'s ``path`` (a field, or a lookup through fields) may offer among
        ``queryset``: the objects the holder may read, the scopes their own roles are given at, and the objects
        that the ``model`` objects they may read point at through ``path`` (the pool of a group they read is
        named on the group's page; it is also the current value of any object they may edit). Nothing else: a
        picker names nothing its user could not see already. One query when it is shown or checked, none
        before. Objects in no scope (users and groups: principals) are not limited here."""
        if self.superuser or scopes.object_kind(queryset.model) is None:
            return queryset
        queryset = queryset.all()  # a field may hold a manager
        offered = Q(pk__in=sorted(self._scope_ids(queryset.model)))
        if scopes.object_kind(model) is not None:
            offered |= Q(pk__in=self.readable(model._default_manager.all()).values(path))
        return self.readable(queryset) | queryset.filter(offered)

    def _scope_ids(self, model: type[Model]) -> set[int]:
        """The ids of ``model``'s rows that one of the holder's roles is given at (``model`` a scope model)."""
        return {scope_id for _, scope_type, scope_id in self.held
                if scope_id is not None and scopes.scope_model(scope_type) is model}


NOBODY = Grants()
EVERYTHING = Grants(superuser=True)


def action_for(model: type[Model], verb: str) -> str:
    """``<kind>.<verb>`` for a registered model; a model no app registered has no actions (never granted)."""
    kind = scopes.object_kind(model)
    return f"{kind.kind}.{verb}" if kind is not None else f"unregistered:{model._meta.label_lower}.{verb}"


def grants_of(user) -> Grants:
    """What ``user`` holds now, directly and through their groups (one query; none for a superuser)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return NOBODY
    if user.is_superuser:
        return EVERYTHING
    rows = RoleAssignment.objects.filter(Q(user_id=user.pk) | Q(group__in=user.groups.all()))
    return Grants(held=frozenset(rows.values_list("role", "scope_type", "scope_id")))


def grants_for_request(request) -> Grants:
    """``grants_of(request.user)``, loaded once per request."""
    cached = getattr(request, "_role_grants", None)
    user = request.user
    if cached is not None and cached[0] == (user.pk, user.is_authenticated):
        return cached[1]
    grants = grants_of(user)
    request._role_grants = ((user.pk, user.is_authenticated), grants)
    return grants


def holds_any_role(user) -> bool:
    """Whether ``user`` may use the management surfaces at all (what they see there is up to their roles)."""
    grants = grants_of(user)
    return grants.superuser or bool(grants.held)
