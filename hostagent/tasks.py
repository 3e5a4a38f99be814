"""Celery tasks of the host channel: thin wrappers over hostagent's domain functions.

Only transient database failures are retried; a refused registration is an answer, not an error.
"""
from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from broker.models import SessionHost
from core import ca
from core.choices import CertificatePurpose
from hostagent import health, registration
from hostagent.commands import request_command

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)
# The registering agent waits for this task's answer: retry briefly or not at all.
REGISTRATION_RETRY = {"autoretry_for": TRANSIENT_ERRORS, "retry_backoff": 1, "retry_jitter": True, "max_retries": 2}
PERIODIC_RETRY = {"autoretry_for": TRANSIENT_ERRORS, "retry_backoff": True, "retry_jitter": True, "max_retries": 3}
RENEWAL_COMMAND_TIMEOUT = 60.0


@shared_task(**REGISTRATION_RETRY)
def register_session_host(host_pool_id: int, name: str, csr_pem: str) -> dict:
    """Issue a host-agent certificate and create or re-bind the host; returns the ids, or the refusal
    as ``{"refused": code, "detail": sentence, "http_status": n}``. A pool deleted meanwhile fails
    the insert and is reported as a refusal by the database rule."""
    try:
        registered = registration.register_session_host(host_pool_id, name, csr_pem)
    except registration.RegistrationRefused as exc:
        return {"refused": exc.code, "detail": str(exc), "http_status": exc.http_status}
    return {"session_host_id": registered.session_host_id, "certificate_id": registered.certificate_id,
            "rebound": registered.rebound}


@shared_task(**PERIODIC_RETRY)
def mark_missed_heartbeats() -> int:
    """Mark Unavailable the online hosts whose agent missed WVD_MISSED_HEARTBEATS heartbeats;
    returns how many. Hosts deleted meanwhile are simply not found."""
    return health.mark_missed_heartbeats()


@shared_task(**PERIODIC_RETRY)
def renew_host_certificates() -> int:
    """Order a renewal over the host channel for every connected host whose host-agent certificate
    is due (CERTIFICATE_RENEWAL_WINDOW); returns how many renewed. Hosts not connected now are
    tried again on the next run, while their certificate is still valid."""
    due = ca.certificates_due_for_renewal(CertificatePurpose.HOST_AGENT)
    renewed = 0
    for host_id in SessionHost.objects.filter(certificate__in=due).values_list("pk", flat=True):
        result = request_command(host_id, "renew-certificate", {}, timeout=RENEWAL_COMMAND_TIMEOUT)
        if result.ok:
            renewed += 1
        else:
            log.warning("host %s: certificate renewal %s: %s", host_id, result.status, result.message)
    return renewed
