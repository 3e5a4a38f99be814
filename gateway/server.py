"""The RD Gateway listener: every kind of RDP client reaches session hosts through it.

An asyncio TLS server on the same event loop as daphne. It parses each client's first HTTP request head
itself (FreeRDP 2 sends ``RDG_OUT_DATA`` with a non-standard WebSocket key that off-the-shelf stacks
refuse) and hands the connection to the transport the request asks for, all on
``/remoteDesktopGateway/`` (gateway/transports/__init__.py has the table):

* ``RDG_OUT_DATA`` with a WebSocket upgrade: MS-TSGU over WebSocket (gateway.transports.rdg_websocket);
* ``RDG_OUT_DATA`` / ``RDG_IN_DATA`` without one: the legacy two-connection form (…rdg_legacy);
* ``GET`` with a WebSocket upgrade: raw RDP with a Bearer ticket, FreeRDP 3's ``wst`` (…wst);
* ``GET /remoteDesktopGateway/rdcleanpath`` with a WebSocket upgrade: the browser client (…rdcleanpath).

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

from django.db import InterfaceError, OperationalError
from django.utils import timezone

from broker import verdicts
from core import logcontext, metrics
from gateway import httpupgrade, memory, records
from gateway.httpupgrade import HttpError
from gateway.preauth import PreAuthGuard
from gateway.relay import RelayResult, Rendezvous
from gateway.transports import agentlink, rdcleanpath, rdg_legacy, rdg_websocket, wst
from gateway.transports.setup import in_thread
from gateway.transports.stream import READ_SIZE, ClientStream, describe_drop, is_ordinary_tls_end

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0  # seconds for the client to send its HTTP request head
# A record (a connection's end) written while the database is away is tried again, backing off from the
# first delay to the longest, for this long; then it is given up with an error line.
RECORD_RETRY_SECONDS = 600.0
RECORD_RETRY_FIRST_DELAY, RECORD_RETRY_MAX_DELAY = 0.5, 5.0
TRIM_AFTER = 5.0  # seconds from a connection's close until freed memory is returned to the system


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
    # Unauthenticated connections (gateway/preauth.py): the absolute deadline, the caps.
    preauth_timeout: float = 20.0
    preauth_max_per_address: int = 32
    preauth_max: int = 2048
    # The portal's origins (settings.WEB_ORIGINS): where a browser client's WebSocket may come from.
    web_origins: tuple[str, ...] = ()


class GatewayServer:
    """This process's RD Gateway listener, its rendezvous of relays and its half-open legacy pairs."""

    def __init__(self, config: GatewayConfig, rendezvous: Rendezvous, ssl_context: ssl.SSLContext | None) -> None:
        self.config = config
        self.rendezvous = rendezvous
        metrics.relay_traffic.watch(rendezvous.relays)  # read at scrape time, never per frame
        self.ssl_context = ssl_context
        self.legacy_pairs = rdg_legacy.LegacyPairs()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._reports: set[asyncio.Future] = set()
        self._verdicts: asyncio.Task | None = None
        self.preauth = PreAuthGuard(config.preauth_max_per_address, config.preauth_max)
        self._trim_due: asyncio.TimerHandle | None = None

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
        stream = ClientStream(reader, writer)
        if not self.preauth.enter(stream.address):
            # Over a cap: the cheapest possible answer (no parsing, no database), logged rate-limited.
            stream.write(httpupgrade.build_error_response(503, "too many connections are waiting to authenticate"))
            await stream.wait_closed()
            return
        stream.counted = True
        if task is not None:
            self._tasks.add(task)
        deadline = asyncio.get_running_loop().call_later(self.config.preauth_timeout, self._preauth_due, stream, task)
        try:
            await self._serve(stream)
        except HttpError as exc:
            stream.refuse(exc.status, exc.message)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            if is_ordinary_tls_end(exc):
                log.debug("client %s ended its TLS connection (%s)", stream.address, describe_drop(exc))
            else:
                log.info("client %s dropped: %s", stream.address, describe_drop(exc))
        except asyncio.CancelledError:
            # stop() ended this connection, or its pre-authentication deadline did (logged there). Finish
            # normally: on Python 3.11 asyncio's done-callback for a connection task logs an error when the
            # task ends cancelled.
            if not stream.preauth_expired:
                log.info("client %s: connection closed as the gateway stops", stream.address)
        except Exception:  # noqa: BLE001 - one client's bug must never take the listener down
            log.exception("unexpected error serving gateway client %s", stream.address)
        finally:
            deadline.cancel()
            self._uncount(stream)
            await stream.wait_closed()
            if task is not None:
                self._tasks.discard(task)
            self._trim_soon()

    def _trim_soon(self) -> None:
        """Connections closed: give their buffers back to the system a little later, at most once every
        TRIM_AFTER seconds however many close (gateway/memory.py)."""
        if self._trim_due is None:
            self._trim_due = asyncio.get_running_loop().call_later(TRIM_AFTER, self._trim)

    def _trim(self) -> None:
        self._trim_due = None
        memory.trim()

    def authenticated(self, *streams: ClientStream | None) -> None:
        """The client's ticket was admitted, or the agent proved its host: no deadline, no cap any more."""
        for stream in streams:
            if stream is not None:
                stream.authenticated = True
                self._uncount(stream)

    def _uncount(self, stream: ClientStream) -> None:
        if stream.counted:
            stream.counted = False
            self.preauth.leave(stream.address)

    def _preauth_due(self, stream: ClientStream, task: asyncio.Task | None) -> None:
        """The absolute pre-authentication deadline: close a connection that has not authenticated."""
        if stream.authenticated or task is None or task.done():
            return
        if stream.authenticating:
            # Its ticket is being checked right now (a database round trip): let that answer, then decide.
            asyncio.get_running_loop().call_later(1.0, self._preauth_due, stream, task)
            return
        stream.preauth_expired = True
        self.preauth.expired.note(f"from {stream.address} after {self.config.preauth_timeout:g} s")
        task.cancel()

    async def _serve(self, stream: ClientStream) -> None:
        """Dispatch on the first request: the method, the path and whether it asks for WebSocket."""
        head = await stream.read_head(HEAD_TIMEOUT)
        if head is None:
            return
        if agentlink.is_agent_link(head):
            await agentlink.serve(self, stream, head)
            return
        if rdcleanpath.is_rdcleanpath_path(head):
            if head.method != "GET" or not head.is_websocket_upgrade:
                raise HttpError(400, f"{rdcleanpath.PATH} is a WebSocket upgrade (the browser client, RDCleanPath)")
            await rdcleanpath.serve(self, stream, head)
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

    def report_end(self, result: RelayResult, after: asyncio.Future | None = None) -> None:
        """The relay ended: record it off the loop (once per connection), with the time it ended, once
        ``after`` (the record of its start) is done."""
        self.record(partial(records.finish, result, timezone.now()), f"the end of {result.connection_id}", after=after)

    def record(self, work: Callable[[], object], what: str = "a connection's record", *,
               after: asyncio.Future | None = None) -> None:
        """Run blocking database ``work`` in a thread without waiting for it; ``stop`` waits for it.
        While the database is unreachable the work is tried again (it is one conditional UPDATE per
        transition, so a second try changes nothing that the first did), for up to RECORD_RETRY_SECONDS.
        With ``after``, the work starts once that earlier record is done, however it went (it logs its own
        failure)."""
        report = asyncio.ensure_future(self._record(work, what, after))
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)

    async def _record(self, work: Callable[[], object], what: str, after: asyncio.Future | None = None) -> None:
        if after is not None:
            await asyncio.wait([after])
        loop = asyncio.get_running_loop()
        give_up, delay, tries = loop.time() + RECORD_RETRY_SECONDS, RECORD_RETRY_FIRST_DELAY, 0
        while True:
            tries += 1
            try:
                await in_thread(work)()
            except (OperationalError, InterfaceError) as exc:
                first_line = logcontext.first_line(exc)
                if loop.time() + delay > give_up:
                    log.error("could not record %s: the database stayed unreachable for %d s (%s)", what,
                              RECORD_RETRY_SECONDS, first_line)
                    return
                if tries == 1:
                    log.warning("could not record %s yet (the database: %s); trying again until it answers",
                                what, first_line)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX_DELAY)
            except Exception:  # noqa: BLE001 - a bug in one record must not go unseen nor stop the others
                log.exception("could not record %s", what)
                return
            else:
                if tries > 1:
                    log.info("recorded %s after the database came back (%d tries)", what, tries)
                return

    async def stop(self) -> None:
        """Stop listening, end every relay and client task, and wait until their ends are recorded."""
        if self._server is not None:
            self._server.close()
        if self._verdicts is not None:
            self._verdicts.cancel()
        if self._trim_due is not None:
            self._trim_due.cancel()
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
