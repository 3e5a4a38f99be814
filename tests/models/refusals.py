"""How a model-layer and a database-level refusal look, so every invariant test says it the same way."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction


def assert_invalid(obj: models.Model, message: str) -> None:
    """full_clean() refuses ``obj`` with an error whose text contains ``message``."""
    with pytest.raises(ValidationError) as refusal:
        obj.full_clean()
    texts = [text for errors in refusal.value.message_dict.values() for text in errors]
    assert any(message in text for text in texts), f"{message!r} not among {texts}"


@contextmanager
def refused_by_database(rule: str) -> Iterator[None]:
    """The statements in the block, which bypass full_clean(), abort with an IntegrityError naming ``rule``.

    ``rule`` is a regular expression matching the trigger's message or the constraint's name (for a unique
    index over plain columns SQLite names the columns instead, so such tests accept either). Both
    databases put it in the error, which proves the refusal came from that rule, not an unrelated one.
    """
    with pytest.raises(IntegrityError, match=rule):
        with transaction.atomic():
            yield


def execute(sql: str, params: list | tuple = ()) -> None:
    """Raw SQL: the way a shell, a script or a future bug would write, past every Python check."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
