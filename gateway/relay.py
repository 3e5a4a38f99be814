"""The relay core: pairs a connection's client end and host end in process and moves bytes between them.

It knows nothing of transports. Each end is an adapter (RD Gateway WebSocket, legacy RD Gateway HTTP,
raw WebSocket, the agent link) that offers ``send(data)`` — which waits while its peer is
slow, so backpressure reaches the producer — and ``close(reason)``. The per-frame path is
``Relay.deliver``: a dictionary-free attribute check, a counter and an await; no database, thread pool or
channel layer.

Bytes that arrive for an end not attached yet are queued (bounded) and flushed into it before it is wired
in for new bytes, with no await between the last flush and the wiring, so the stream is never reordered.
"""
from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

# Bytes we hold for an end that has not arrived yet. RDP's client speaks first and waits for answers,
# so only a misbehaving peer ever gets near this.
MAX_PENDING_BYTES = 1 << 20


class Side(enum.Enum):
    CLIENT = "client"
    HOST = "host"

    @property
    def other(self) -> Side:
        return Side.HOST if self is Side.CLIENT else Side.CLIENT


class RelayEnd(Protocol):
    async def send(self, data: bytes) -> None: ...

    def close(self, reason: str) -> None: ...


class RelayError(Exception):
    pass


@dataclass(frozen=True)
class RelayResult:
    connection_id: str
    ended_by: Side | None
    reason: str
    bytes_client_to_host: int
    bytes_host_to_client: int


class Relay:
    """One connection's pair of ends."""

    def __init__(self, connection_id: str, on_end: Callable[[RelayResult], None] | None = None,
                 max_pending: int = MAX_PENDING_BYTES, transport: str = "") -> None:
        self.connection_id = connection_id
        self.transport = transport  # how the client came (a label for the metrics; the relay ignores it)
        self._on_end = on_end
        self._max_pending = max_pending
        self._ends: dict[Side, RelayEnd | None] = {Side.CLIENT: None, Side.HOST: None}
        self._pending: dict[Side, deque[bytes]] = {Side.CLIENT: deque(), Side.HOST: deque()}
        self._pending_bytes = {Side.CLIENT: 0, Side.HOST: 0}
        self.bytes_client_to_host = 0
        self.bytes_host_to_client = 0
        self.result: RelayResult | None = None
        self.ended = asyncio.Event()
        self.paired = asyncio.Event()

    @property
    def is_ended(self) -> bool:
        return self.result is not None

    @property
    def is_paired(self) -> bool:
        return self.paired.is_set()

    async def attach(self, side: Side, end: RelayEnd) -> None:
        """Wire ``end`` in as ``side``, after flushing what arrived for it meanwhile, in order."""
        if self.is_ended:
            end.close(self.result.reason)
            raise RelayError("the connection has already ended")
        if self._ends[side] is not None:
            raise RelayError(f"the {side.value} end is already attached")
        pending = self._pending[side]
        while pending:
            chunk = pending.popleft()
            self._pending_bytes[side] -= len(chunk)
            await end.send(chunk)
            if self.is_ended:
                return
        # No await between the empty check above and this line: new bytes now go straight to the end.
        self._ends[side] = end
        if self._ends[side.other] is not None:
            self.paired.set()

    async def deliver(self, origin: Side, data: bytes) -> None:
        """Move ``data`` that arrived from ``origin`` to the other end (waiting while it is slow)."""
        if self.result is not None or not data:
            return
        if origin is Side.CLIENT:
            self.bytes_client_to_host += len(data)
        else:
            self.bytes_host_to_client += len(data)
        target = self._ends[origin.other]
        if target is not None:
            await target.send(data)
            return
        side = origin.other
        if self._pending_bytes[side] + len(data) > self._max_pending:
            self.end(origin, f"more than {self._max_pending} bytes arrived before the {side.value} end")
            return
        self._pending[side].append(data)
        self._pending_bytes[side] += len(data)

    def end(self, by: Side | None, reason: str) -> RelayResult:
        """End the connection once: close both ends and report. Later calls return the first result."""
        if self.result is not None:
            return self.result
        self.result = RelayResult(
            connection_id=self.connection_id,
            ended_by=by,
            reason=reason,
            bytes_client_to_host=self.bytes_client_to_host,
            bytes_host_to_client=self.bytes_host_to_client,
        )
        for side, end in self._ends.items():
            if end is not None:
                try:
                    end.close(reason)
                except Exception:  # noqa: BLE001 - one end failing to close must not keep the other open
                    log.exception("closing the %s end of %s failed", side.value, self.connection_id)
        self._pending = {Side.CLIENT: deque(), Side.HOST: deque()}
        self.ended.set()
        if self._on_end is not None:
            try:
                self._on_end(self.result)
            except Exception:  # noqa: BLE001 - reporting must not break the close path
                log.exception("reporting the end of %s failed", self.connection_id)
        return self.result


class Rendezvous:
    """This process's relays by connection id: the client's side waits here for the host to arrive."""

    def __init__(self) -> None:
        self._relays: dict[str, Relay] = {}

    def __len__(self) -> int:
        return len(self._relays)

    def relays(self) -> list[Relay]:
        """The open relays (a copy: safe to read from another thread, e.g. a metrics scrape)."""
        return list(self._relays.values())

    def open(self, connection_id: str, on_end: Callable[[RelayResult], None] | None = None,
             transport: str = "") -> Relay:
        if connection_id in self._relays:
            raise RelayError(f"connection {connection_id} is already open here")

        def forget(result: RelayResult) -> None:
            self._relays.pop(connection_id, None)
            if on_end is not None:
                on_end(result)

        relay = Relay(connection_id, on_end=forget, transport=transport)
        self._relays[connection_id] = relay
        return relay

    def get(self, connection_id: str) -> Relay | None:
        return self._relays.get(connection_id)

    async def wait_paired(self, relay: Relay, timeout: float, *also: asyncio.Event) -> bool:
        """Wait until both ends are attached; False on timeout, when the relay ended first, or when one
        of the ``also`` events (another reason to look) was set first."""
        events = (relay.paired, relay.ended, *also)
        if not any(event.is_set() for event in events):
            waiters = {asyncio.ensure_future(event.wait()) for event in events}
            try:
                await asyncio.wait(waiters, timeout=max(timeout, 0), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return relay.paired.is_set() and not relay.is_ended


async def pump(read: Callable[[], Awaitable[bytes]], relay: Relay, origin: Side) -> None:
    """Read from one end until EOF and deliver to the other; EOF or an error ends the relay."""
    try:
        while not relay.is_ended:
            data = await read()
            if not data:
                relay.end(origin, f"{origin.value} closed")
                return
            await relay.deliver(origin, data)
    except (OSError, asyncio.IncompleteReadError) as exc:  # OSError: resets, TLS errors
        relay.end(origin, f"{origin.value} connection lost: {exc.__class__.__name__}")
