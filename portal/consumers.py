"""The portal's WebSocket: portal users' browsers join "portal.updates" and get the ids of what changed."""
from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from broker.models import SessionHost
from core.authorization import grants_of
from portal.access import is_portal_user
from portal.live import GROUP, HostChanged, SessionsChanged

log = logging.getLogger(__name__)


class PortalConsumer(AsyncJsonWebsocketConsumer):
    """Session-authenticated (AuthMiddlewareStack in routing.py), for portal users (access.is_portal_user, as
    every portal page).

    Messages hold ids and never data: the page fetches what changed from portal endpoints, which check
    the user on every request. Still, each message goes only to a user whose roles, read again for that
    message, let them read the host it names (core/authorization.py): an operator of one pool does not learn
    the ids or the rhythm of another's hosts, and a user whose role was taken away hears nothing more.
    """

    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not await database_sync_to_async(is_portal_user)(user):
            log.info("portal WebSocket refused for %s", getattr(user, "username", None) or "an anonymous visitor")
            await self.close(code=4403)  # before accept: the handshake is answered with 403
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        # The page only listens; anything it sends is ignored (not an error worth closing over).
        return

    async def portal_host_changed(self, event: HostChanged) -> None:
        if await self._may_read_host(event["host_id"], event["host_pool_id"]):
            await self.send_json({"type": "host", "host_id": event["host_id"], "host_pool_id": event["host_pool_id"]})

    async def portal_sessions_changed(self, event: SessionsChanged) -> None:
        if await self._may_read_host(event["host_id"], None):
            await self.send_json({"type": "sessions", "host_id": event["host_id"]})

    @database_sync_to_async
    def _may_read_host(self, host_id: int, host_pool_id: int | None) -> bool:
        """Whether the user, as they are now (active, superuser, roles), may read the host: its pool decides.
        Two or three queries per message and user; a deleted host whose pool the message does not name is
        told to nobody but superusers."""
        user = get_user_model().objects.filter(pk=getattr(self.scope.get("user"), "pk", None), is_active=True).first()
        grants = grants_of(user)
        if grants.superuser:
            return True
        if host_pool_id is not None:
            return grants.allows("sessionhost.view", SessionHost(pk=host_id, host_pool_id=host_pool_id))
        return grants.readable(SessionHost.objects.filter(pk=host_id)).exists()
