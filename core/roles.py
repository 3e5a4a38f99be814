"""The built-in roles, after Azure Virtual Desktop's, mapped onto our objects and actions (docs/roles.md).

An action is ``<kind>.<verb>``: the kind of object (``hostpool``, ``sessionhost``, ...) and what is done to
it (``view``, ``add``, ``change``, ``delete``, or an operation such as ``sessionhost.drain``). A role is a
set of actions and the scopes it may be given at. Who holds which role where is ``RoleAssignment``
(core/models.py); whether a holder may do an action on an object is ``core.authorization``'s one rule.

This module is data: no models, no queries, so the model and the API's read-only table can import it.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class ScopeType(models.TextChoices):
    ALL = "all", "Everything"
    WORKSPACE = "workspace", "A workspace"
    HOSTPOOL = "hostpool", "A host pool"
    APPLICATIONGROUP = "applicationgroup", "An application group"


CRUD = ("view", "add", "change", "delete")
# Every kind of object a role can reach and the verbs it has. Each app tells core.authorization which of
# its models is which kind and how each lies inside the scopes (broker/apps.py, feed/apps.py).
KINDS: dict[str, tuple[str, ...]] = {
    "workspace": CRUD,
    "applicationgroup": CRUD,
    "desktop": ("view", "change"),  # created and deleted with its application group
    "remoteapp": CRUD,
    "assignment": CRUD,
    "hostpool": (*CRUD, "token"),  # token: issue or revoke the registration token
    "sessionhost": ("view", "change", "delete", "drain", "replace", "renew"),
    "usersession": ("view", "logoff", "disconnect", "message"),
    "connection": ("view",),
    "gatewayinstance": ("view",),
    "certificate": ("view",),
    "auditevent": ("view",),  # the audit log (core/audit.py): in no scope but 'all'
}
ACTIONS: frozenset[str] = frozenset(f"{kind}.{verb}" for kind, verbs in KINDS.items() for verb in verbs)


def _all(*kinds: str) -> set[str]:
    return {f"{kind}.{verb}" for kind in kinds for verb in KINDS[kind]}


def _view(*kinds: str) -> set[str]:
    return {f"{kind}.view" for kind in kinds}


FEED_KINDS = ("applicationgroup", "desktop", "remoteapp", "assignment")
POOL_KINDS = ("hostpool", "sessionhost", "usersession", "connection")


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    actions: frozenset[str]
    scopes: tuple[str, ...]


def _role(name: str, description: str, actions: set[str], scopes: tuple[str, ...]) -> Role:
    unknown = actions - ACTIONS
    assert not unknown, f"{name} names unknown actions {sorted(unknown)}"  # a typo in this table, at import
    return Role(name, description, frozenset(actions), scopes)


ALL = ScopeType.ALL.value
WS, HP, AG = ScopeType.WORKSPACE.value, ScopeType.HOSTPOOL.value, ScopeType.APPLICATIONGROUP.value

ROLES: dict[str, Role] = {role.name: role for role in [
    _role("Desktop Virtualization Contributor", "Manage everything in its scope; not role assignments.",
          set(ACTIONS), (ALL, WS, HP, AG)),
    _role("Desktop Virtualization Reader", "Read everything in its scope.",
          {action for action in ACTIONS if action.endswith(".view")}, (ALL, WS, HP, AG)),
    _role("Host Pool Contributor", "Manage host pools, their session hosts and user sessions, and their "
          "registration tokens.", _all(*POOL_KINDS), (ALL, HP)),
    _role("Host Pool Reader", "Read host pools, their session hosts, user sessions and connections.",
          _view(*POOL_KINDS), (ALL, HP)),
    _role("Application Group Contributor", "Manage application groups, their desktop, RemoteApps and "
          "assignments.", _all(*FEED_KINDS), (ALL, WS, HP, AG)),
    _role("Application Group Reader", "Read application groups, their desktop, RemoteApps and assignments.",
          _view(*FEED_KINDS), (ALL, WS, HP, AG)),
    _role("Workspace Contributor", "Manage workspaces; read their application groups.",
          _all("workspace") | _view("applicationgroup"), (ALL, WS)),
    _role("Workspace Reader", "Read workspaces.", _view("workspace"), (ALL, WS)),
    _role("Session Host Contributor", "Manage session hosts (drain, replace, renew, delete), issue registration "
          "tokens, act on user sessions; read host pools.",
          _all("sessionhost", "usersession") | _view("hostpool") | {"hostpool.token"}, (ALL, HP)),
    _role("User Session Operator", "Log off, disconnect and send messages to user sessions; read host pools "
          "and session hosts.", _all("usersession") | _view("hostpool", "sessionhost"), (ALL, HP)),
    _role("User Session Reader", "Read user sessions, host pools and session hosts.",
          _view("usersession", "hostpool", "sessionhost"), (ALL, HP)),
    _role("Power On Off Contributor", "Take session hosts out of service and back (drain mode: we run no VMs "
          "to power); read host pools and session hosts.",
          {"sessionhost.drain"} | _view("hostpool", "sessionhost"), (ALL, HP)),
]}
ROLE_CHOICES = [(name, name) for name in ROLES]
