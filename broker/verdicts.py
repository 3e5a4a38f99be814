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
  wakes its waiter. It carries the activity id only: the verdict itself is read from the database. A
  verdict on a connection of this very process's instance that found no waiter here is sent nowhere:
  nobody waits for it anywhere (the gateway failing a client it is still talking to, say).

A lost announcement (the channel layer down at that moment) costs the client time, never the outcome: the
waiter also re-reads the verdict now and then (SAFETY_POLL_INTERVAL), and its own deadline still holds.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from wire.relaylink import ACTIVITY_ID

log = logging.getLogger(__name__)

# How often a waiting client's verdict is read even though no announcement came (a lost message).
SAFETY_POLL_INTERVAL = 5.0
# channels_redis forgets group members after a day (group_expiry): re-join well before that.
GROUP_REFRESH_SECONDS = 3600.0


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
# The gateway instances this process is (whose group it listens to): a verdict on one of their
# connections that finds no waiter here has nobody to reach anywhere.
_instances_here: set[int] = set()


def announce(activity_id: str, gateway_instance_id: int | None) -> None:
    """A verdict on ``activity_id`` is committed: wake its waiter, here or in the instance holding it."""
    if waiters.wake(activity_id) or gateway_instance_id is None or gateway_instance_id in _instances_here:
        return
    event: VerdictEvent = {"type": "connection.verdict", "activity_id": activity_id}
    try:
        async_to_sync(get_channel_layer().group_send)(instance_group(gateway_instance_id), event)
    except Exception:  # noqa: BLE001 - the verdict is recorded; the waiter's safety poll still reads it
        log.warning("could not announce the verdict on %s to gateway instance %s", activity_id,
                    gateway_instance_id, exc_info=True)


async def listen(instance_id: int, registry: Waiters = waiters, *, retry_delay: float = 1.0,
                 max_retry_delay: float = 30.0) -> None:
    """Wake this process's waiters for the announcements sent to its instance's group, until cancelled.

    Survives the channel layer going away (Redis restarting): it waits (longer each time, up to
    ``max_retry_delay``), joins the group again with a new channel and goes on.
    """
    layer = get_channel_layer()
    group = instance_group(instance_id)
    _instances_here.add(instance_id)
    delay = retry_delay
    try:
        while True:
            channel = None
            try:
                channel = await layer.new_channel()
                await layer.group_add(group, channel)
                if delay > retry_delay:
                    log.info("verdict listener of %s: listening again", group)
                delay = retry_delay
                await _receive(layer, group, channel, registry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the layer is down: try again, never stop listening
                log.warning("verdict listener of %s: %s; retrying in %.0f s", group, exc, delay)
                if channel is not None:
                    with contextlib.suppress(Exception):
                        await layer.group_discard(group, channel)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_retry_delay)
    finally:
        _instances_here.discard(instance_id)


async def _receive(layer, group: str, channel: str, registry: Waiters) -> None:
    """Wake the waiter of every well-formed announcement; re-join the group now and then meanwhile
    (memberships expire) without ever interrupting the receive."""
    rejoin = asyncio.ensure_future(_rejoin_every(layer, group, channel, GROUP_REFRESH_SECONDS))
    try:
        while True:
            message = await layer.receive(channel)
            activity_id = message.get("activity_id") if isinstance(message, dict) else None
            if (not isinstance(message, dict) or message.get("type") != "connection.verdict"
                    or not isinstance(activity_id, str) or not ACTIVITY_ID.fullmatch(activity_id)):
                log.warning("verdict listener of %s: ignored a malformed message", group)
                continue
            registry.wake(activity_id)
    finally:
        rejoin.cancel()


async def _rejoin_every(layer, group: str, channel: str, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await layer.group_add(group, channel)
        except Exception as exc:  # noqa: BLE001 - the receive will notice a dead layer and start over
            log.warning("verdict listener of %s: could not re-join: %s", group, exc)
