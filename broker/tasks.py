"""The broker's Celery tasks: thin wrappers over broker/orchestration.py and broker/placement.py."""
from __future__ import annotations

from celery import shared_task

from broker import orchestration, placement


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
    """Fail connections whose host never arrived and free their slots; returns how many."""
    return len(placement.expire_stale_reservations())
