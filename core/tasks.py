"""Celery tasks of the control plane's core: thin wrappers over core.ca, core.tickets, core.directory and the
audit log's retention.

Only transient failures (the database unreachable or dropping the connection) are retried; a CAError is
final, so retrying could never help.
"""
from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from core import ca, directory, tickets
from core.models import AuditEvent

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)
RETRY = {"autoretry_for": TRANSIENT_ERRORS, "retry_backoff": True, "retry_jitter": True, "max_retries": 5}
# The names these tasks were published under (when this module was wvdportal/tasks.py): queued messages,
# beat schedules and monitoring know them by name.
NAME_PREFIX = "wvdportal.tasks."


@shared_task(name=NAME_PREFIX + "renew_expiring_certificates", **RETRY)
def renew_expiring_certificates() -> int:
    """Renew the server-side certificates that expire within CERTIFICATE_RENEWAL_WINDOW; returns how
    many were renewed. Host-agent certificates (and host-rdp ones whose key lives on the host) are
    logged as needing a new CSR; the host channel orders those renewals. A certificate revoked or
    deleted between the query and its renewal is skipped; a retry never renews one twice."""
    renewed, needs_csr = ca.renew_due_certificates()
    if renewed or needs_csr:
        logger.info("Certificate renewal: %d renewed, %d waiting for a new CSR", len(renewed), len(needs_csr))
    return len(renewed)


@shared_task(name=NAME_PREFIX + "purge_expired_ticket_revocations", **RETRY)
def purge_expired_ticket_revocations() -> int:
    """Drop revocation rows of tickets that have expired anyway; returns how many. Rows deleted by
    someone else meanwhile are simply not counted."""
    return tickets.purge_expired_revocations()


@shared_task(name="core.tasks.sync_directory_users", **RETRY)
def sync_directory_users() -> dict:
    """Refresh the directory users' groups, names and staff flag; deactivate the ones the directory no
    longer has (core.directory.sync_directory). A user deleted here meanwhile is skipped by the query."""
    result = directory.sync_directory()
    return {"refreshed": result.refreshed, "deactivated": result.deactivated, "unavailable": result.unavailable}


@shared_task(name=NAME_PREFIX + "purge_old_audit_events", **RETRY)
def purge_old_audit_events() -> int:
    """Delete the audit events recorded longer ago than WVD_AUDIT_RETENTION_DAYS, in batches; returns how
    many. Rows a concurrent run deleted are simply not counted twice."""
    cutoff = timezone.now() - settings.AUDIT_RETENTION
    deleted = AuditEvent.objects.purge_before(cutoff)
    if deleted:
        logger.info("purged %d audit event(s) recorded before %s", deleted, cutoff.isoformat())
    return deleted
