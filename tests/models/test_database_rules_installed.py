"""Every trigger the migrations declare is in the migrated database, on its table.

SQLite rebuilds a table for most schema changes (AlterField, AddConstraint, ...) and a rebuild drops the
table's triggers without a word; this catches a rule lost that way even where no other test covers it.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from core.dbrules import DatabaseRule

pytestmark = pytest.mark.django_db


def declared_rules() -> dict[str, str]:
    loader = MigrationLoader(connection)
    return {
        operation.name: operation.table
        for migration in loader.disk_migrations.values()
        for operation in migration.operations
        if isinstance(operation, DatabaseRule)
    }


def installed_triggers() -> dict[str, str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal")
        return dict(cursor.fetchall())


def test_the_migrations_declare_the_rules_of_the_object_model():
    assert {"hostpool_type_immutable", "applicationgroup_type_immutable"} <= set(declared_rules())


def test_every_declared_rule_is_installed_on_its_table():
    installed = installed_triggers()
    missing = {name: table for name, table in declared_rules().items() if installed.get(name) != table}
    assert missing == {}
