"""Database-level rules that span rows or tables, as triggers, for SQLite and PostgreSQL.

Check and unique constraints cover single rows; rules such as "a RemoteApp group only in a pooled
pool" compare two tables, which only a trigger can enforce. A violated rule aborts the statement
with an IntegrityError carrying the rule's message, whatever wrote the row (ORM, raw SQL, a shell).
"""
from __future__ import annotations

from django.db import migrations


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
        if vendor == "sqlite":
            schema_editor.execute(
                f"CREATE TRIGGER {self.name} BEFORE {self.event} ON {self.table} FOR EACH ROW "
                f"WHEN {self.violated_when} BEGIN SELECT RAISE(ABORT, '{self.message}'); END"
            )
        elif vendor == "postgresql":
            schema_editor.execute(
                f"CREATE FUNCTION {self.name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {self.violated_when} THEN RAISE EXCEPTION USING ERRCODE = 'check_violation', "
                f"MESSAGE = '{self.message}'; END IF; RETURN NEW; END $$"
            )
            schema_editor.execute(
                f"CREATE TRIGGER {self.name} BEFORE {self.event} ON {self.table} "
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
