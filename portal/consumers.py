"""The portal's WebSocket: staff browsers join "portal.updates" and get the ids of what changed."""
from __future__ import annotations

import logging

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.access import is_portal_user
from portal.live import GROUP, HostChanged, SessionsChanged

log = logging.getLogger(__name__)


class PortalConsumer(AsyncJsonWebsocketConsumer):
    """Session-authenticated (AuthMiddlewareStack in routing.py), staff only (access.is_portal_user, as every
    portal page).

    Messages hold ids and never data: the page fetches what changed from portal endpoints, which check
    the user on every request. So a handler needs no permission check of its own and no database work,
    and a user demoted while the socket is open learns nothing but that some host changed.
    """

    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not is_portal_user(user):
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
        await self.send_json({"type": "host", "host_id": event["host_id"], "host_pool_id": event["host_pool_id"]})

    async def portal_sessions_changed(self, event: SessionsChanged) -> None:
        await self.send_json({"type": "sessions", "host_id": event["host_id"]})
