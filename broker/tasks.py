"""The broker's Celery tasks: thin wrappers over broker/orchestration.py and broker/placement.py."""
from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from broker import gateways, orchestration, placement
from broker.models import Connection
from core import logcontext

log = logging.getLogger(__name__)


@shared_task(autoretry_for=(ConnectionError,), retry_backoff=0.2, retry_backoff_max=2, retry_jitter=True,
             max_retries=3)
def orchestrate_connection(connection_id: int, gateway_instance: str) -> dict:
    """Place a connection and order its host to dial ``gateway_instance``.

    A connection that vanished meanwhile raises (nothing to do, nothing changed); one that already
    failed or was already placed is left as it is (placement is idempotent). Retries only on transient
    connection errors (the channel layer), and the client's wait bounds the whole attempt anyway.
    """
    result = orchestration.orchestrate(connection_id, gateway_instance)
    return {"ok": result.ok, "session_host_id": result.session_host_id, "error_code": result.error_code}


@shared_task
def expire_stale_reservations() -> int:
    """Fail connections whose host never arrived and free their slots; returns how many (0 while the
    database is unreachable: the next run, moments later, does the work)."""
    try:
        return len(placement.expire_stale_reservations())
    except (OperationalError, InterfaceError) as exc:
        _database_away("expire_stale_reservations", exc)
        return 0


@shared_task(autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, retry_jitter=True, max_retries=3)
def purge_old_connections() -> int:
    """Delete the Connection records that ended longer ago than WVD_CONNECTION_RETENTION_DAYS; returns how
    many. Rows deleted by a concurrent run are simply not counted twice."""
    cutoff = timezone.now() - settings.CONNECTION_RETENTION
    deleted = Connection.objects.purge_ended_before(cutoff)
    if deleted:
        log.info("purged %d connection record(s) that ended before %s", deleted, cutoff.isoformat())
    return deleted


@shared_task
def sweep_lost_gateway_instances() -> dict[str, int]:
    """End the open connections of the gateway instances not seen for a while (``gateways.sweep_lost_instances``);
    returns how many ended, by instance name (none while the database is unreachable: the next run sweeps)."""
    try:
        return gateways.sweep_lost_instances()
    except (OperationalError, InterfaceError) as exc:
        _database_away("sweep_lost_gateway_instances", exc)
        return {}


def _database_away(task: str, exc: Exception) -> None:
    """A frequent periodic task during a database outage: one log line per run, not a traceback (beat runs
    it again soon, which is its retry)."""
    log.warning("%s skipped: the database is unreachable (%s)", task,
                logcontext.first_line(exc))
