"""Live updates for open portal pages: the one sender helper for the channel-layer group "portal.updates".

Messages carry ids only. The consumer forwards them to every staff browser in the group, and each page
fetches a small fragment from a portal endpoint (which checks who is asking) for what it shows, so the
consumer does no database work per message and no data is pushed to anyone.

Call ``notify_host_changed`` after changing a session host's status, drain mode, heartbeat or health
without ``save()`` (queryset ``update()`` sends no signal), and ``notify_sessions_changed`` after
changing a host's user sessions in bulk. ``save()``, ``create()`` and ``delete()`` of SessionHost and
UserSession, and every status transition (SessionHost.set_status records a SessionHostStatusChange),
are caught by the signal receivers below. A notification inside a transaction is sent once it commits,
so the page never fetches rows that are not there yet; a failure to send is logged, never raised: a
portal page missing an update must not break heartbeat processing.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from broker.models import SessionHost, SessionHostStatusChange, UserSession

log = logging.getLogger(__name__)

GROUP = "portal.updates"


class HostChanged(TypedDict):
    type: Literal["portal.host_changed"]
    host_id: int
    host_pool_id: int | None  # None when the sender did not know it


class SessionsChanged(TypedDict):
    type: Literal["portal.sessions_changed"]
    host_id: int


PortalEvent = HostChanged | SessionsChanged


def host_changed(host_id: int, host_pool_id: int | None = None) -> HostChanged:
    return {"type": "portal.host_changed", "host_id": int(host_id),
            "host_pool_id": None if host_pool_id is None else int(host_pool_id)}


def sessions_changed(host_id: int) -> SessionsChanged:
    return {"type": "portal.sessions_changed", "host_id": int(host_id)}


def notify_host_changed(host_id: int, host_pool_id: int | None = None) -> None:
    """A session host's status, drain mode, heartbeat, health or existence changed (sync callers)."""
    _send_after_commit(host_changed(host_id, host_pool_id))


def notify_sessions_changed(host_id: int) -> None:
    """The user sessions of a session host changed (sync callers)."""
    _send_after_commit(sessions_changed(host_id))


async def anotify_host_changed(host_id: int, host_pool_id: int | None = None) -> None:
    """``notify_host_changed`` for async callers (outside any database transaction)."""
    await _asend(host_changed(host_id, host_pool_id))


async def anotify_sessions_changed(host_id: int) -> None:
    """``notify_sessions_changed`` for async callers (outside any database transaction)."""
    await _asend(sessions_changed(host_id))


async def _asend(event: PortalEvent) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(GROUP, dict(event))
    except Exception:  # noqa: BLE001  (a missed page update must never break the caller)
        log.warning("portal update %s for host %s not sent", event["type"], event["host_id"], exc_info=True)


_pending: set[asyncio.Task] = set()  # tasks must be referenced until done, or they may vanish


def _send_now(event: PortalEvent) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        # Called on an event loop's own thread: async_to_sync cannot run here, a task can.
        task = loop.create_task(_asend(event))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
    else:
        async_to_sync(_asend)(event)


def _send_after_commit(event: PortalEvent) -> None:
    transaction.on_commit(lambda: _send_now(event))


# --- signal receivers: changes made through save(), create() and delete() anywhere -------------------

def _on_host_saved(sender, instance, **kwargs) -> None:
    notify_host_changed(instance.pk, instance.host_pool_id)


def _on_status_change_recorded(sender, instance, created: bool = False, **kwargs) -> None:
    if created:
        notify_host_changed(instance.session_host_id)


def _on_session_saved(sender, instance, **kwargs) -> None:
    notify_sessions_changed(instance.session_host_id)


def connect_signals() -> None:
    """Connected once from PortalConfig.ready()."""
    post_save.connect(_on_host_saved, sender=SessionHost, dispatch_uid="portal-host-saved")
    post_delete.connect(_on_host_saved, sender=SessionHost, dispatch_uid="portal-host-deleted")
    post_save.connect(_on_status_change_recorded, sender=SessionHostStatusChange,
                      dispatch_uid="portal-host-status-changed")
    post_save.connect(_on_session_saved, sender=UserSession, dispatch_uid="portal-session-saved")
    post_delete.connect(_on_session_saved, sender=UserSession, dispatch_uid="portal-session-deleted")
