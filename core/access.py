"""Taking access away takes effect at once: a per-user moment before which connection tickets are refused.

A ticket is a bearer credential valid for hours; when the user signs out, gets a new password, is
deactivated, leaves a group or is unassigned, the files downloaded before must stop working. Each of those
calls ``access_changed`` (signals in core/signals.py and feed/signals.py), and the gateway's admission
(gateway/records.py) refuses a connection ticket issued at or before the user's last change. The entitlement
itself (is the user still assigned, does the resource still exist) is re-checked at admission too
(broker/admission.py); this catches what that cannot see: the same assignment taken away and given back,
a sign-out, a password change.

Ticket times have a resolution of a second: a ticket issued in the same second as the change counts as
issued before it (refused; a new download a second later works).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone

from core.models import UserAccessChange

log = logging.getLogger(__name__)


def access_changed(user_ids: Iterable[int], reason: str) -> None:
    """From now on, refuse the connection tickets these users hold."""
    ids = sorted({int(user_id) for user_id in user_ids if user_id is not None})
    if not ids:
        return
    now = timezone.now()
    UserAccessChange.objects.bulk_create(
        [UserAccessChange(user_id=user_id, changed_at=now, reason=reason[:100]) for user_id in ids],
        update_conflicts=True, unique_fields=["user_id"], update_fields=["changed_at", "reason"],
    )
    log.info("access changed (%s) for %d user(s): %s", reason, len(ids), ids[:20])


def last_access_change(user_id: int) -> datetime | None:
    return UserAccessChange.objects.filter(user_id=user_id).values_list("changed_at", flat=True).first()


def ticket_predates_access_change(user_id: int, issued_at: datetime) -> bool:
    """True when a ticket issued at ``issued_at`` (whole seconds) was issued before the user's last change."""
    changed_at = last_access_change(user_id)
    return changed_at is not None and issued_at <= changed_at
