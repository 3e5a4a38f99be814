"""The RD Gateway listener: every kind of RDP client reaches session hosts through it.

An asyncio TLS server on the same event loop as daphne. It parses each client's first HTTP request head
itself (FreeRDP 2 sends ``RDG_OUT_DATA`` with a non-standard WebSocket key that off-the-shelf stacks
refuse) and hands the connection to the transport the request asks for, all on
``/remoteDesktopGateway/`` (gateway/transports/__init__.py has the table):

* ``RDG_OUT_DATA`` with a WebSocket upgrade: MS-TSGU over WebSocket (gateway.transports.rdg_websocket);
* ``RDG_OUT_DATA`` / ``RDG_IN_DATA`` without one: the legacy two-connection form (…rdg_legacy);
* ``GET`` with a WebSocket upgrade: raw RDP with a Bearer ticket, FreeRDP 3's ``wst`` (…wst).

Session hosts' agents dial the same listener at ``/hostagent/relay/<activity id>/``
(gateway.transports.agentlink), so both halves of every connection are this process's own sockets.

Anything else gets a short HTTP error and a log line, never a traceback. The transports hand the byte
stream to the relay core once the session host has dialled in.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from broker import verdicts
from gateway import httpupgrade, records
from gateway.httpupgrade import HttpError
from gateway.relay import RelayResult, Rendezvous
from gateway.transports import agentlink, rdg_legacy, rdg_websocket, wst
from gateway.transports.setup import in_thread
from gateway.transports.stream import READ_SIZE, ClientStream

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0  # seconds for the client to send its HTTP request head


@dataclass
class GatewayConfig:
    instance_name: str
    host_arrival_timeout: float  # seconds the client waits for its session host's reverse connection
    # Its GatewayInstance row: the broker announces verdicts to this instance's group (broker/verdicts.py).
    # None (tests of the listener alone): only verdicts reached in this process wake a waiting client.
    instance_id: int | None = None
    # The broker's verdict wakes a waiting client (broker/verdicts.py); this often it is read anyway, in
    # case an announcement was lost.
    verdict_check_interval: float = verdicts.SAFETY_POLL_INTERVAL
    setup_idle_timeout: float = 30.0  # seconds of client silence allowed while setup waits on the client
    legacy_pair_timeout: float = 30.0  # seconds half of a legacy RDG_OUT_DATA/RDG_IN_DATA pair waits


class GatewayServer:
    """This process's RD Gateway listener, its rendezvous of relays and its half-open legacy pairs."""

    def __init__(self, config: GatewayConfig, rendezvous: Rendezvous, ssl_context: ssl.SSLContext | None) -> None:
        self.config = config
        self.rendezvous = rendezvous
        self.ssl_context = ssl_context
        self.legacy_pairs = rdg_legacy.LegacyPairs()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._reports: set[asyncio.Future] = set()
        self._verdicts: asyncio.Task | None = None

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        # Plain TCP (no context) is for tests and for TLS terminated in front of the gateway.
        tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": 15} if self.ssl_context is not None else {}
        self._server = await asyncio.start_server(self._accept, host, port, limit=READ_SIZE, **tls)
        if self.config.instance_id is not None:
            self._verdicts = asyncio.ensure_future(verdicts.listen(self.config.instance_id))
        log.info("RD Gateway listening on %s:%s (instance %s)", host, port, self.config.instance_name)
        return self._server

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        stream = ClientStream(reader, writer)
        try:
            await self._serve(stream)
        except HttpError as exc:
            stream.refuse(exc.status, exc.message)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("client %s dropped: %s", stream.address, exc.__class__.__name__)
        except asyncio.CancelledError:
            # stop() ended this connection. Finish normally: on Python 3.11 asyncio's own done-callback
            # for a connection task logs an error when the task ends cancelled.
            log.info("client %s: connection closed as the gateway stops", stream.address)
        except Exception:  # noqa: BLE001 - one client's bug must never take the listener down
            log.exception("unexpected error serving gateway client %s", stream.address)
        finally:
            await stream.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, stream: ClientStream) -> None:
        """Dispatch on the first request: the method, the path and whether it asks for WebSocket."""
        head = await stream.read_head(HEAD_TIMEOUT)
        if head is None:
            return
        if agentlink.is_agent_link(head):
            await agentlink.serve(self, stream, head)
            return
        if not head.is_rdg_path:
            raise HttpError(404, f"not found; the RD Gateway is at {httpupgrade.RDG_PATH}")
        method, upgrade = head.method, head.is_websocket_upgrade
        if method == rdg_legacy.OUT:
            if upgrade:
                await rdg_websocket.serve(self, stream, head)
            else:
                await rdg_legacy.serve_out(self, stream, head)
        elif method == rdg_legacy.IN:
            if upgrade:
                raise HttpError(400, "RDG_IN_DATA is the legacy transport's upload and is never upgraded")
            await rdg_legacy.serve_in(self, stream, head)
        elif upgrade:  # GET, the only other method parse_request_head lets through
            await wst.serve(self, stream, head)
        else:
            raise HttpError(400, f"GET {httpupgrade.RDG_PATH} must be a WebSocket upgrade (raw RDP with a "
                                 "Bearer ticket); RD Gateway clients use RDG_OUT_DATA")

    def report_end(self, result: RelayResult) -> None:
        """The relay ended: record it off the loop (once per connection)."""
        self.record(partial(records.finish, result))

    def record(self, work: Callable[[], object]) -> None:
        """Run blocking database ``work`` in a thread without waiting for it; ``stop`` waits for it."""
        report = asyncio.ensure_future(in_thread(work)())
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)

    async def stop(self) -> None:
        """Stop listening, end every relay and client task, and wait until their ends are recorded."""
        if self._server is not None:
            self._server.close()
        if self._verdicts is not None:
            self._verdicts.cancel()
        for connection_id in list(self.rendezvous._relays):  # noqa: SLF001 - our own registry
            relay = self.rendezvous.get(connection_id)
            if relay is not None:
                relay.end(None, "gateway instance stopping")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._reports:
            await asyncio.gather(*self._reports, return_exceptions=True)
