"""The Connection owns its lifecycle: only its queryset (broker/models.py) writes Connection rows.

Every other module — the gateway's records, placement, orchestration, the instance registry — calls the
transitions (``admit``, ``reserve``, ``fail``, ``finish``, ...). This reads the source of every
application module and fails on a write that reaches Connection rows any other way: a queryset of
``Connection`` or of a ``.connections`` relation that is updated, created, deleted or saved.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.db import transaction

from broker.models import Connection
from tests.architecture.connection_writes import DirectConnectionWrite

ROOT = Path(__file__).resolve().parents[2]
APPS = ("wire", "core", "broker", "feed", "hostagent", "gateway", "portal", "wvdportal")
OWNER = ROOT / "broker" / "models.py"
WRITES = {"update", "create", "get_or_create", "update_or_create", "bulk_create", "bulk_update", "delete",
          "save", "raw"}


def application_modules() -> list[Path]:
    return sorted(path for app in APPS for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts)


def reaches_connections(node: ast.AST) -> bool:
    """Whether an expression's receiver chain starts at ``Connection`` or goes through ``.connections``."""
    while True:
        if isinstance(node, ast.Name):
            return node.id == "Connection"
        if isinstance(node, ast.Attribute):
            if node.attr == "connections":
                return True
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return False


def direct_writes(path: Path) -> list[str]:
    """``<line>: .<method>()`` for every write in the module that reaches Connection rows."""
    return [f"{node.lineno}: .{node.func.attr}()" for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES
            and reaches_connections(node.func.value)]


def test_only_the_connection_lifecycle_writes_connection_rows():
    writes = [f"{path.relative_to(ROOT)}:{write}" for path in application_modules() if path != OWNER
              for write in direct_writes(path)]
    assert writes == [], "write through Connection's transitions (broker/models.py) instead:\n" + "\n".join(writes)


@pytest.mark.parametrize("source", [
    "Connection.objects.filter(pk=1).update(state='ended')",
    "Connection.objects.create(state='started')",
    "pool.connections.all().delete()",
    "Connection.objects.select_for_update().filter(pk=1)[0].save()",
])
def test_the_check_sees_a_direct_write(tmp_path, source):
    module = tmp_path / "module.py"
    module.write_text(source + "\n")
    assert direct_writes(module)


@pytest.mark.django_db
def test_a_direct_write_at_run_time_is_refused_wherever_it_comes_from(member):
    """The guard the whole run works under (tests/architecture/connection_writes.py): application code
    that writes the table itself is stopped; here a module outside the lifecycle is simulated."""
    module = ROOT / "gateway" / "_direct_write_probe.py"
    code = compile("def write(qs):\n    qs.update(client_name='x')\n", str(module), "exec")
    namespace: dict = {}
    exec(code, namespace)  # a function whose code says it lives in gateway/, as an application module's would
    connection = Connection.objects.admit(user=member, username="member")
    with pytest.raises(DirectConnectionWrite, match="gateway/_direct_write_probe.py:2 writes Connection rows"):
        with transaction.atomic():  # the refused write marks its transaction for rollback
            namespace["write"](Connection.objects.filter(pk=connection.pk))
    Connection.objects.filter(pk=connection.pk).record_client_name("through the lifecycle")  # allowed


@pytest.mark.django_db
def test_deleting_a_user_may_null_their_connections(member):
    connection = Connection.objects.admit(user=member, username="member")
    member.delete()  # Django's collector: SET_NULL, as the model declares
    assert Connection.objects.get(pk=connection.pk).user is None
