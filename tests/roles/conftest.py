"""Two of everything, side 1 and side 2, and which objects each scope holds: the specification every
surface's role matrix (API, portal, admin) is checked against.

The scope object is always side 1's: workspace ws1, host pool p1, application group ag1. INSIDE says, written
out by hand from docs/roles.md's "What a scope holds", which of the estate's objects lie in each scope;
side 2's objects lie in none but 'all'.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client
from django.utils import timezone

from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession
from core.models import AuditEvent, Certificate
from core.roles import ROLES
from feed.models import ApplicationGroup, Assignment, RemoteApp, Workspace

SIDE_1 = {"ws1", "p1", "ag1", "rag1", "d1", "app1", "as1", "h1", "s1", "c1"}
INSIDE = {
    "all": None,  # everything
    "workspace": {"ws1", "ag1", "rag1", "d1", "app1", "as1", "c1"},
    "hostpool": {"p1", "ag1", "rag1", "d1", "app1", "as1", "h1", "s1", "c1"},
    "applicationgroup": {"ag1", "d1", "as1", "c1"},
}
# Where a new object of each kind lands (side 1's containers): which scopes hold it.
NEW_OBJECT_INSIDE = {
    "workspace": {"all"},
    "hostpool": {"all"},
    "applicationgroup": {"all", "workspace", "hostpool"},  # in ws1 and p1
    "remoteapp": {"all", "workspace", "hostpool"},  # in rag1
    "assignment": {"all", "workspace", "hostpool", "applicationgroup"},  # to ag1
}
# Every (role, scope type) a role may be given at.
ROLE_SCOPES = [(role.name, scope) for role in ROLES.values() for scope in role.scopes]


def inside(scope_type: str, name: str) -> bool:
    return INSIDE[scope_type] is None or name in INSIDE[scope_type]


# Side 1's containers, which every side-1 scope holder may pick in a form (docs/roles.md, "Pickers"): the scope of
# their own role, or the pool and workspace the groups they read are in.
CONTAINERS_1 = {"ws1", "p1"}


def pickable(scope_type: str, name: str) -> bool:
    """Whether a holder of a role at side 1's scope of ``scope_type`` may name ``name`` in a form or an API
    write (given a role that reads or writes it; the objects here are all named by contributors of them)."""
    return inside(scope_type, name) or name in CONTAINERS_1


class AuditWatch:
    """The audit events recorded since the last look: each granted action that changed something must be in the
    log under the delegate's name, and a refused one must leave nothing there."""

    def __init__(self) -> None:
        self.mark = self._latest()

    @staticmethod
    def _latest() -> int:
        return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    def mistakes(self, what: str, granted: bool) -> list[str]:
        events = list(AuditEvent.objects.filter(pk__gt=self.mark).values_list("action", "actor_name"))
        self.mark = self._latest()
        return audit_mistakes(what, granted, events)


def audit_mistakes(what: str, granted: bool, events: list[tuple[str, str]]) -> list[str]:
    if granted and not any(actor == "delegate" for _, actor in events):
        return [f"{what}: done but not in the audit log ({events})"]
    if not granted and events:
        return [f"{what}: refused but audited as {events}"]
    return []


@dataclass
class Estate:
    objects: dict

    def __getitem__(self, name: str):
        return self.objects[name]

    def scope(self, scope_type: str):
        return {"all": None, "workspace": self["ws1"], "hostpool": self["p1"], "applicationgroup": self["ag1"]}[
            scope_type]

    def names_of(self, model) -> set[str]:
        return {name for name, obj in self.objects.items() if type(obj) is model}

    def name_of(self, model, pk: int) -> str:
        return next(name for name, obj in self.objects.items() if type(obj) is model and obj.pk == pk)


@pytest.fixture
def estate(db, outsider) -> Estate:
    objects: dict = {}
    now = timezone.now()
    gateway = GatewayInstance.objects.create(name="gw", public_host="gw.example.net", public_port=8443)
    objects["gw"] = gateway
    objects["cert"] = Certificate.objects.create(
        serial_number="0abc", subject="CN=h1", common_name="h1", purpose="host-agent", fingerprint_sha256="cd" * 32,
        not_before=now, not_after=now + timezone.timedelta(days=1), pem="PEM")
    for side in ("1", "2"):
        ws = objects[f"ws{side}"] = Workspace.objects.create(name=f"ws{side}")
        pool = objects[f"p{side}"] = HostPool.objects.create(name=f"p{side}", max_session_limit=5)
        ag = objects[f"ag{side}"] = ApplicationGroup.objects.create(
            name=f"ag{side}", group_type="desktop", host_pool=pool, workspace=ws)
        objects[f"d{side}"] = ag.desktop
        rag = objects[f"rag{side}"] = ApplicationGroup.objects.create(
            name=f"rag{side}", group_type="remoteapp", host_pool=pool, workspace=ws)
        objects[f"app{side}"] = RemoteApp.objects.create(application_group=rag, name=f"app{side}",
                                                         friendly_name=f"App {side}", file_path="a.exe")
        objects[f"as{side}"] = Assignment.objects.create(application_group=ag, user=outsider)
        host = objects[f"h{side}"] = SessionHost.objects.create(host_pool=pool, name=f"h{side}.example.net")
        objects[f"s{side}"] = UserSession.objects.create(session_host=host, session_id=int(side), user=outsider,
                                                         username=outsider.username)
        objects[f"c{side}"] = Connection.objects.create(
            user=outsider, username=outsider.username, application_group=ag, host_pool=pool, session_host=host,
            gateway_instance=gateway, state="ended", end_reason="client_closed")
    return Estate(objects)


@pytest.fixture
def holder(django_user_model, estate, give_role):
    """holder(role, scope_type, staff=False): a browser signed in as a new user holding that one role at side
    1's object of that scope type (at 'all': everything)."""

    def _holder(role_name: str, scope_type: str, staff: bool = False) -> Client:
        user = django_user_model.objects.create_user("delegate", is_staff=staff)
        give_role(user, role_name, estate.scope(scope_type))
        browser = Client()
        browser.force_login(user)
        return browser

    return _holder
