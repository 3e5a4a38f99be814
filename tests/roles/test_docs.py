"""docs/roles.md's tables are the role table in core/roles.py: a role or action changed in one and not the
other fails here."""
from __future__ import annotations

from pathlib import Path

from core.roles import ACTIONS, ROLES
from tests.bench.test_bench_quick import table_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "roles.md"


def _rows(first_header: str) -> list[list[str]]:
    return table_rows(DOC.read_text(), first_header)


def test_the_roles_table_names_every_role_with_its_scopes_in_order():
    rows = _rows("#")
    assert [(row[1], row[3]) for row in rows] == [
        (role.name, ", ".join(f"`{scope}`" for scope in role.scopes)) for role in ROLES.values()]


def test_the_actions_table_marks_exactly_each_role_s_actions():
    rows = _rows("action")
    assert {row[0].strip("`") for row in rows} == set(ACTIONS)
    roles = list(ROLES.values())
    for row in rows:
        action = row[0].strip("`")
        assert [cell == "✓" for cell in row[1:]] == [action in role.actions for role in roles], action
