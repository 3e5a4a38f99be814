"""The legacy RD Gateway HTTP transport (PROTOCOLS.md §4.7), for clients that do not do WebSocket
(``xfreerdp /gt:http,no-websockets``, ``xfreerdp3 /gateway:type:http,no-websockets``, older clients).

A client opens two TLS connections that carry the same ``RDG-Connection-Id``:

* OUT: ``RDG_OUT_DATA`` → ``200 OK`` without a length, the 10-byte seed, then our TSGU packets, raw,
  for as long as the tunnel lives;
* IN: an empty ``RDG_IN_DATA`` → ``200 OK`` with ``Content-Length: 0``; the client re-sends
  ``RDG_IN_DATA`` with ``Transfer-Encoding: chunked`` on the same connection and streams its TSGU
  packets as chunks.

The two halves meet here, in this process only (a client reaches one instance, the one its file names),
paired by RDG-Connection-Id and owner: the client's IP address, the only identity known before the
ticket arrives inside the IN stream (rdpgw pairs by its authenticated user the same way). Either half
may come first; a half that waits ``legacy_pair_timeout`` seconds (30 by default) without its partner
is closed and freed. A second OUT or IN for an id that already has one, or one from another address, is
refused with 409/403. Once paired, the IN connection's task runs the tunnel; the OUT task only watches for the client
closing its end. Either connection ending ends both.
"""
from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.choices import ConnectionTransport
from gateway import httpupgrade, records
from gateway.httpupgrade import HttpError
from gateway.transports.stream import ClientStream
from gateway.transports.tunnel import RdgTunnel

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0  # seconds for the chunked RDG_IN_DATA that follows the empty one
MAX_CONNECTION_ID_LENGTH = 64
# FreeRDP sends a braced GUID; accept any short token of GUID characters.
_CONNECTION_ID = re.compile(r"[A-Za-z0-9{}-]+").fullmatch

OUT, IN = "RDG_OUT_DATA", "RDG_IN_DATA"


def connection_id_of(head: httpupgrade.RequestHead) -> str:
    """The request's RDG-Connection-Id, validated; HttpError(400) when missing or malformed."""
    value = head.connection_id
    if not value:
        raise HttpError(400, "the legacy RD Gateway transport needs an RDG-Connection-Id header")
    if len(value) > MAX_CONNECTION_ID_LENGTH or not _CONNECTION_ID(value):
        raise HttpError(400, "malformed RDG-Connection-Id")
    return value


@dataclass(eq=False)
class LegacyPair:
    """The two connections of one legacy tunnel, as far as they have arrived."""

    connection_id: str
    owner: str
    halves: dict[str, ClientStream] = field(default_factory=dict)
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_complete(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.complete.wait()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """End both connections (each task then sees its end)."""
        for stream in self.halves.values():
            stream.close()


class LegacyPairs:
    """This process's legacy pairs by RDG-Connection-Id, from the first half's arrival to the tunnel's end."""

    def __init__(self) -> None:
        self._pairs: dict[str, LegacyPair] = {}

    def __len__(self) -> int:
        return len(self._pairs)

    def join(self, connection_id: str, owner: str, method: str, stream: ClientStream) -> LegacyPair:
        """Register ``stream`` as the ``method`` half of ``connection_id``; HttpError when that half is
        already taken (409) or the pair belongs to another client (403)."""
        pair = self._pairs.get(connection_id)
        if pair is None:
            pair = self._pairs[connection_id] = LegacyPair(connection_id, owner)
        elif pair.owner != owner:
            raise HttpError(403, "this RDG-Connection-Id belongs to another client")
        if method in pair.halves:
            raise HttpError(409, f"a {method} request for this RDG-Connection-Id is already open")
        pair.halves[method] = stream
        if len(pair.halves) == 2:
            pair.complete.set()
            log.info("legacy RD Gateway pair %s joined (%s)", connection_id, owner)
        return pair

    def discard(self, pair: LegacyPair) -> None:
        if self._pairs.get(pair.connection_id) is pair:
            del self._pairs[pair.connection_id]


class LegacySink:
    """Packets written raw into the RDG_OUT_DATA response body."""

    def __init__(self, pair: LegacyPair) -> None:
        self.pair = pair
        self.out = pair.halves[OUT]

    def send(self, packets: list[bytes]) -> None:
        self.out.write(b"".join(packets))

    async def drain(self) -> None:
        await self.out.drain()

    def keepalive(self) -> None:
        """Nothing to send: TSGU KEEPALIVE is refused during setup by newer clients, and a response body
        has no ping. The upload has no idle timeout while setup waits on the host."""

    def close(self, packets: list[bytes] | None = None) -> None:
        if packets:
            self.send(packets)
        self.pair.close()


async def serve_out(server: GatewayServer, stream: ClientStream, head: httpupgrade.RequestHead) -> None:
    """RDG_OUT_DATA: answer 200 and the seed, wait for the IN half, then hold the connection open for
    the tunnel's packets until either connection ends."""
    pair = server.legacy_pairs.join(connection_id_of(head), stream.address, OUT, stream)
    # The client sends nothing more here: read only to learn when it closes (dropping anything else),
    # from the start, so a client that gives up before its IN half arrives frees the pair at once.
    closed = asyncio.ensure_future(_until_closed(stream))
    try:
        stream.write(httpupgrade.build_legacy_out_response())
        paired = asyncio.ensure_future(pair.complete.wait())
        await asyncio.wait({closed, paired}, timeout=server.config.legacy_pair_timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        paired.cancel()
        if not pair.complete.is_set():
            log.info("legacy pair %s: %s; freeing the half-open pair", pair.connection_id,
                     "the client closed it" if closed.done() else
                     f"no {IN} within {server.config.legacy_pair_timeout}s")
            return
        await closed
    finally:
        closed.cancel()
        server.legacy_pairs.discard(pair)
        pair.close()


async def _until_closed(stream: ClientStream) -> None:
    try:
        while await stream.read():
            pass
    except (ConnectionError, ssl.SSLError):
        pass  # closed all the same


async def serve_in(server: GatewayServer, stream: ClientStream, head: httpupgrade.RequestHead) -> None:
    """RDG_IN_DATA: the empty request, then the chunked one whose body is the client's packet stream."""
    connection_id = connection_id_of(head)
    if head.content_length:
        raise HttpError(400, f"{IN} carries its packets as a chunked body, not with a Content-Length")
    pair = server.legacy_pairs.join(connection_id, stream.address, IN, stream)
    try:
        if not head.chunked:
            stream.write(httpupgrade.build_legacy_in_response())
            try:
                head = await stream.read_head(HEAD_TIMEOUT)
                if head is None:
                    return
                _check_upload_head(head, connection_id)
            except HttpError as exc:
                stream.refuse(exc.status, exc.message)
                return
        if not await pair.wait_complete(server.config.legacy_pair_timeout):
            log.info("legacy pair %s: no %s within %ss; closing the half-open pair",
                     connection_id, OUT, server.config.legacy_pair_timeout)
            return
        await _run_tunnel(server, stream, pair)
    finally:
        server.legacy_pairs.discard(pair)
        pair.close()


def _check_upload_head(head: httpupgrade.RequestHead, connection_id: str) -> None:
    if head.method != IN or not head.is_rdg_path:
        raise HttpError(400, f"expected the chunked {IN} upload after the empty {IN}")
    if not head.chunked:
        raise HttpError(400, f"the second {IN} must use Transfer-Encoding: chunked")
    if head.connection_id != connection_id:
        raise HttpError(400, f"the chunked {IN} carries another RDG-Connection-Id")


async def _run_tunnel(server: GatewayServer, stream: ClientStream, pair: LegacyPair) -> None:
    """Decode the chunked upload into the tunnel until a connection ends."""
    tunnel = RdgTunnel(server, stream.address, LegacySink(pair), tuple(pair.halves.values()),
                       transport=ConnectionTransport.RDG_HTTP)
    decoder = httpupgrade.ChunkedDecoder()
    try:
        while not tunnel.closed:
            chunk = await tunnel.read_client(stream)
            if chunk is None:
                return
            if not chunk:
                tunnel.client_closed("client closed")
                return
            try:
                bodies = decoder.feed(chunk)
            except HttpError as exc:
                # The upload request is still unanswered, so the client can be told in HTTP.
                log.info("legacy client %s sent a bad chunk: %s", stream.address, exc.message)
                stream.write(httpupgrade.build_error_response(exc.status, exc.message))
                await _broken_upload(tunnel, f"The client's upload is malformed: {exc.message}.")
                return
            for body in bodies:
                await tunnel.receive(body)
            if decoder.finished:
                tunnel.client_closed("client ended its upload")
                return
        tunnel.client_closed("the tunnel closed")
    finally:
        await tunnel.finish()


async def _broken_upload(tunnel: RdgTunnel, message: str) -> None:
    if tunnel.opened:
        tunnel.client_closed(message)  # an established relay ends as the client's doing
        tunnel.sink.close()
    else:
        await tunnel.fail_setup(records.ErrorCode.ConnectionFailedClientProtocolError, message)
