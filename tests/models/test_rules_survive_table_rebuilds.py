"""Schema changes that rebuild a SQLite table never lose the database rules or fail because of them."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, models, transaction

from broker.models import HostPool, SessionHost
from core.dbrules import declared_rules, ensure_rules, suspend_rules


def installed() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        return {row[0] for row in cursor.fetchall()}


def widened(model, name: str, max_length: int) -> models.CharField:
    field = models.CharField(max_length=max_length, blank=True)
    field.set_attributes_from_name(name)
    field.model = model
    return field


@pytest.mark.django_db(transaction=True)
def test_rules_come_back_after_a_migration_run_that_rebuilds_their_tables(django_user_model):
    names = {rule.name for rule in declared_rules()}
    suspend_rules()
    with connection.schema_editor() as editor:
        # Both tables: the one carrying rules and the one other rules look up.
        for model, field_name in ((SessionHost, "agent_version"), (HostPool, "friendly_name")):
            old = model._meta.get_field(field_name)
            editor.alter_field(model, old, widened(model, field_name, old.max_length + 1))
            editor.alter_field(model, widened(model, field_name, old.max_length + 1), old)
    ensure_rules()
    assert names <= installed()

    pool = HostPool.objects.create(name="pooled-after-rebuild")
    host = SessionHost.objects.create(host_pool=pool, name="sh-rebuild")
    user = django_user_model.objects.create_user("rebuild-user")
    with pytest.raises(IntegrityError, match="personal host pool"), transaction.atomic():
        SessionHost.objects.filter(pk=host.pk).update(assigned_user=user)


@pytest.mark.django_db
def test_ensuring_the_rules_twice_changes_nothing():
    assert ensure_rules() == []
