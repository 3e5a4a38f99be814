"""How the broker's verdict on a connection being set up reaches the client that waits for it.

While its session host is on the way, a client waits in the gateway instance that holds it
(gateway/transports/setup.py). Whoever fails the connection meanwhile — placement in a Celery worker, the
expiry of a stale reservation, the gateway itself — goes through ``Connection``'s ``fail`` transition,
which calls ``announce`` once the failure is committed. The waiter wakes and reads the verdict from the
database once; nobody polls.

* In process first: a waiter registered in this process (the embedded default places connections in the
  gateway's own process; the gateway fails its own) is woken directly, from any thread.
* Otherwise the announcement goes over the channel layer to the group of the gateway instance that holds
  the client, ``gateway.instance.<id>``; every ``serve`` process listens to its own group (``listen``) and
  wakes its waiter. It carries the activity id only: the verdict itself is read from the database.

A lost announcement (the channel layer down at that moment) costs the client time, never the outcome: the
waiter also re-reads the verdict now and then (SAFETY_POLL_INTERVAL), and its own deadline still holds.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# How often a waiting client's verdict is read even though no announcement came (a lost message).
SAFETY_POLL_INTERVAL = 5.0
# channels_redis forgets group members after a day (group_expiry): re-join well before that.
GROUP_REFRESH_SECONDS = 3600.0
_ACTIVITY_ID = re.compile(r"[0-9a-f-]{1,64}")


class VerdictEvent(TypedDict):
    type: Literal["connection.verdict"]
    activity_id: str


def instance_group(instance_id: int) -> str:
    """The channel-layer group of one gateway instance (its GatewayInstance row's id)."""
    return f"gateway.instance.{int(instance_id)}"


class Waiters:
    """This process's clients waiting for a verdict, by activity id. Waking is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    def register(self, activity_id: str) -> asyncio.Event:
        """An event set when a verdict on ``activity_id`` is announced; call from the waiter's loop."""
        event = asyncio.Event()
        with self._lock:
            self._waiting[activity_id] = (asyncio.get_running_loop(), event)
        return event

    def unregister(self, activity_id: str, event: asyncio.Event) -> None:
        with self._lock:
            if self._waiting.get(activity_id, (None, None))[1] is event:
                del self._waiting[activity_id]

    def wake(self, activity_id: str) -> bool:
        """Wake the waiter of ``activity_id`` if it is in this process; False when it is not."""
        with self._lock:
            waiting = self._waiting.get(activity_id)
        if waiting is None:
            return False
        loop, event = waiting
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # its loop has closed: nobody is left to wake
            return False
        return True

    def __len__(self) -> int:
        return len(self._waiting)


waiters = Waiters()  # one registry per process, like the rendezvous of relays it serves


def announce(activity_id: str, gateway_instance_id: int | None) -> None:
    """A verdict on ``activity_id`` is committed: wake its waiter, here or in the instance holding it."""
    if waiters.wake(activity_id) or gateway_instance_id is None:
        return
    event: VerdictEvent = {"type": "connection.verdict", "activity_id": activity_id}
    try:
        async_to_sync(get_channel_layer().group_send)(instance_group(gateway_instance_id), event)
    except Exception:  # noqa: BLE001 - the verdict is recorded; the waiter's safety poll still reads it
        log.warning("could not announce the verdict on %s to gateway instance %s", activity_id,
                    gateway_instance_id, exc_info=True)


async def listen(instance_id: int, registry: Waiters = waiters, *, retry_delay: float = 1.0) -> None:
    """Wake this process's waiters for the announcements sent to its instance's group, until cancelled.

    Survives the channel layer going away (Redis restarting): it waits, joins the group again and goes on.
    """
    layer = get_channel_layer()
    group = instance_group(instance_id)
    channel = None
    while True:
        try:
            if channel is None:
                channel = await layer.new_channel()
            await layer.group_add(group, channel)  # again now and then: memberships expire
            message = await asyncio.wait_for(layer.receive(channel), GROUP_REFRESH_SECONDS)
        except TimeoutError:
            continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the layer is down: try again, never stop listening
            log.warning("verdict listener of %s: %s; retrying in %.0f s", group, exc, retry_delay)
            channel = None
            await asyncio.sleep(retry_delay)
            continue
        activity_id = message.get("activity_id") if isinstance(message, dict) else None
        if (not isinstance(message, dict) or message.get("type") != "connection.verdict"
                or not isinstance(activity_id, str) or not _ACTIVITY_ID.fullmatch(activity_id)):
            log.warning("verdict listener of %s: ignored a malformed message", group)
            continue
        registry.wake(activity_id)
