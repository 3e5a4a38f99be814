"""Database-level rules that span rows or tables, as triggers, for SQLite and PostgreSQL.

Check and unique constraints cover single rows; rules such as "a RemoteApp group only in a pooled
pool" compare two tables, which only a trigger can enforce. A violated rule aborts the statement
with an IntegrityError carrying the rule's message, whatever wrote the row (ORM, raw SQL, a shell).

SQLite rebuilds a table for most schema changes, and a rebuild silently drops the table's triggers (and
fails outright when another table's trigger refers to the table being rebuilt). So on SQLite every
declared rule is lifted before migrations run and every declared rule is (re)installed after them
(``suspend_rules`` / ``ensure_rules``, connected to pre_migrate and post_migrate in apps.py).
"""
from __future__ import annotations

from django.db import connections, migrations
from django.db.migrations.loader import MigrationLoader


class DatabaseRule(migrations.operations.base.Operation):
    """Refuse ``event`` (INSERT or UPDATE) on ``table`` when ``violated_when`` (SQL over NEW/OLD) holds."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, name: str, table: str, event: str, violated_when: str, message: str) -> None:
        if event not in {"INSERT", "UPDATE"}:
            raise ValueError(f"unsupported trigger event {event!r}")
        if "'" in message:
            raise ValueError("rule messages must not contain quotes")
        self.name, self.table, self.event = name, table, event
        self.violated_when, self.message = violated_when, message

    def deconstruct(self):
        return (self.__class__.__qualname__, [],
                {"name": self.name, "table": self.table, "event": self.event,
                 "violated_when": self.violated_when, "message": self.message})

    def state_forwards(self, app_label, state) -> None:
        pass  # Triggers are invisible to Django's model state.

    def describe(self) -> str:
        return f"Database rule {self.name} on {self.table}"

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "sqlite" and not getattr(schema_editor, "installing_rules", False):
            return  # installed by ensure_rules once the whole migration run is done (see above)
        if vendor == "sqlite":
            schema_editor.execute(
                f"CREATE TRIGGER {self.name} BEFORE {self.event} ON {self.table} FOR EACH ROW "
                f"WHEN {self.violated_when} BEGIN SELECT RAISE(ABORT, '{self.message}'); END"
            )
        elif vendor == "postgresql":
            schema_editor.execute(
                f"CREATE OR REPLACE FUNCTION {self.name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {self.violated_when} THEN RAISE EXCEPTION USING ERRCODE = 'check_violation', "
                f"MESSAGE = '{self.message}'; END IF; RETURN NEW; END $$"
            )
            schema_editor.execute(
                f"CREATE OR REPLACE TRIGGER {self.name} BEFORE {self.event} ON {self.table} "
                f"FOR EACH ROW EXECUTE FUNCTION {self.name}_fn()"
            )
        else:
            raise NotImplementedError(f"database rules support SQLite and PostgreSQL, not {vendor}")

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {self.name} ON {self.table}")
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {self.name}_fn()")
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {self.name}")


def declared_rules(using: str = "default") -> list[DatabaseRule]:
    """Every rule the migrations on disk declare."""
    loader = MigrationLoader(connections[using], load=True)
    return [
        operation
        for migration in loader.disk_migrations.values()
        for operation in migration.operations
        if isinstance(operation, DatabaseRule)
    ]


def _installed(connection) -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        return {row[0] for row in cursor.fetchall()}


def suspend_rules(using: str = "default") -> None:
    """SQLite only: drop our triggers so migrations can rebuild tables (ensure_rules puts them back)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    installed = _installed(connection)
    with connection.cursor() as cursor:
        for rule in declared_rules(using):
            if rule.name in installed:
                cursor.execute(f"DROP TRIGGER IF EXISTS {rule.name}")


def ensure_rules(using: str = "default") -> list[str]:
    """Install every declared rule that is missing and whose tables exist; returns their names."""
    connection = connections[using]
    installed = _installed(connection)
    tables = set(connection.introspection.table_names())
    missing = [rule for rule in declared_rules(using) if rule.name not in installed and rule.table in tables]
    if missing:
        with connection.schema_editor() as editor:
            editor.installing_rules = True
            for rule in missing:
                rule.database_forwards("", editor, None, None)
    return [rule.name for rule in missing]
