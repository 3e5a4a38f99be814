"""Registrations of one name at the same moment, each in its own thread with its own database connection:
one wins, the others are refused. On PostgreSQL this proves the row lock on the host (and the unique
name for a new one); SQLite serialises the writers on its database lock."""
from __future__ import annotations

import threading

import pytest
from django.db import connection as db_connection

from broker.models import SessionHost
from core.models import Certificate
from hostagent import registration
from hostagent.agent.state import make_csr, new_key
from tests.placement.test_concurrency import database_file_on_sqlite  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("database_file_on_sqlite")]

RACERS = 3


def register_all_at_once(pool_id: int, name: str, count: int = RACERS) -> list:
    """Register ``name`` from ``count`` threads released together; each result is a RegisteredHost or
    the RegistrationRefused raised."""
    barrier = threading.Barrier(count)
    csrs = [make_csr(new_key(), name) for _ in range(count)]
    results: list = [None] * count
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = registration.register_session_host(pool_id, name, csrs[index])
        except registration.RegistrationRefused as exc:
            results[index] = exc
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            db_connection.close()  # this thread's own connection

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def outcome(results: list) -> tuple[list[registration.RegisteredHost], list[str]]:
    won = [r for r in results if isinstance(r, registration.RegisteredHost)]
    refused = [r.code for r in results if isinstance(r, registration.RegistrationRefused)]
    return won, refused


def test_concurrent_re_registrations_of_a_marked_host_cannot_both_win(our_ca, pooled_pool, admin_user):
    first = registration.register_session_host(pooled_pool.pk, "host-a", make_csr(new_key(), "host-a"))
    SessionHost.objects.get().mark_for_replacement(by=admin_user)

    won, refused = outcome(register_all_at_once(pooled_pool.pk, "host-a"))

    assert len(won) == 1 and refused == ["host_in_use"] * (RACERS - 1)
    host = SessionHost.objects.get()
    assert host.certificate_id == won[0].certificate_id and host.certificate.is_valid_now
    assert host.marked_for_replacement_at is None
    # Only the winner's certificate is valid: the replaced one and the losers' are revoked.
    valid = Certificate.objects.filter(purpose="host-agent", revoked_at__isnull=True)
    assert list(valid.values_list("pk", flat=True)) == [won[0].certificate_id]
    assert Certificate.objects.get(pk=first.certificate_id).revoked_at is not None


def test_concurrent_first_registrations_of_a_name_make_one_host(our_ca, pooled_pool):
    won, refused = outcome(register_all_at_once(pooled_pool.pk, "host-new"))

    assert len(won) == 1 and refused == ["host_in_use"] * (RACERS - 1)
    assert SessionHost.objects.get().certificate_id == won[0].certificate_id
    assert Certificate.objects.filter(purpose="host-agent", revoked_at__isnull=True).count() == 1
