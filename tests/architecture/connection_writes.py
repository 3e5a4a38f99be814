"""A guard for the whole test run: every SQL statement that writes the Connection table must come from
its lifecycle (``ConnectionQuerySet`` in broker/models.py).

The source check (test_connection_writes.py) reads the code; this watches what actually runs, in every
thread of the test process, so a write that the source check cannot see (a queryset kept in a
variable, an instance's ``save()``) fails the test that made it. Allowed besides the lifecycle: the
tests themselves (their fixtures build rows directly) and Django's deletion collector (deleting a user
or a pool sets their connections' foreign keys to NULL, as the model declares).
"""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from pathlib import Path

from django.db.backends.utils import CursorWrapper

ROOT = Path(__file__).resolve().parents[2]
OWNER = str(ROOT / "broker" / "models.py")
TESTS = str(ROOT / "tests") + "/"
DELETION = "/django/db/models/deletion.py"
WRITE = re.compile(r'\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?broker_connection"?[\s(]', re.IGNORECASE)


class DirectConnectionWrite(AssertionError):
    pass


def writer_of(sql: str) -> str | None:
    """The ``file:line`` of the application code behind a write of the Connection table, when that is not
    the lifecycle; None for anything else."""
    if not isinstance(sql, str) or not WRITE.match(sql):
        return None
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.endswith(DELETION):
            return None
        if filename.startswith(str(ROOT)) and "/.venv/" not in filename:
            if filename == OWNER or filename.startswith(TESTS):
                return None
            return f"{Path(filename).relative_to(ROOT)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


@contextmanager
def only_the_lifecycle_writes_connections():
    original = CursorWrapper._execute_with_wrappers

    def guarded(self, sql, params, many, executor):
        where = writer_of(sql)
        if where is not None:
            raise DirectConnectionWrite(f"{where} writes Connection rows directly; use the Connection's "
                                        "transitions (broker/models.py, ConnectionQuerySet)")
        return original(self, sql, params, many, executor)

    CursorWrapper._execute_with_wrappers = guarded
    try:
        yield
    finally:
        CursorWrapper._execute_with_wrappers = original
