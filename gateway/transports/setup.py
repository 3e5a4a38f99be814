"""Steps 6-9 for one client, whatever its transport: the ticket, the Connection record, the broker's
placement, the wait for the session host's reverse connection, and the outcome.

A transport calls these in order and answers its client in its own words (a TSGU response, an HTTP
status, a WebSocket close code). Every refusal is recorded as a failed Connection with a documented
error code before the transport hears of it. Database work runs in worker threads, at setup and at the
end only, never per frame.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.utils import timezone

from broker import verdicts
from core import logcontext, metrics
from gateway import records
from gateway.relay import Relay, RelayEnd, RelayError, RelayResult, Side
from gateway.transports.stream import ClientStream

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger(__name__)

PING_INTERVAL = 5.0  # keep-alives while the host is on its way (proxies drop idle connections)


def in_thread(func: Callable) -> Callable:
    """Run blocking database work off the event loop (one thread hop per call, never per frame).

    Like Channels' consumers, close the thread's connection around the call when it is old or broken
    (CONN_MAX_AGE), so a long-running gateway never keeps a dead or stray connection in a worker thread.
    """
    return database_sync_to_async(func, thread_sensitive=False)


async def cancel_reader(task: asyncio.Task | None) -> None:
    """Stop a transport's reader (or setup) task at the end of its connection, whatever it was doing."""
    if task is not None and not task.done():
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already ending
            pass


class ClientSetup:
    """One client's way from its ticket to a paired relay."""

    def __init__(self, server: GatewayServer, client_address: str, streams: Sequence[ClientStream] = (), *,
                 transport: str = "") -> None:
        self.server = server
        self.client_address = client_address
        self.transport = transport  # a ConnectionTransport: recorded, and decides which tickets it takes
        self.streams = tuple(streams)  # the client's connection(s): authenticated once its ticket is admitted
        self.admission: records.Admission | None = None
        self.relay: Relay | None = None
        self._start_recorded: asyncio.Future | None = None  # the relay's start being written (``started``)

    @property
    def activity_id(self) -> str:
        return self.admission.activity_id if self.admission is not None else ""

    @property
    def paired(self) -> bool:
        return self.relay is not None and self.relay.paired.is_set()

    async def admit(self, ticket: str, refuse_with: records.Denial | None = None) -> records.Refusal | None:
        """Step 6: check the ticket and open the Connection record (a refusal is recorded too, unless the
        ticket is not ours at all: gateway/preauth.py). ``refuse_with``: a refusal the transport decided
        itself, recorded under the ticket's user (records.admit)."""
        for stream in self.streams:
            stream.authenticating = True
        try:
            outcome = await in_thread(records.admit)(ticket, self.client_address, self.server.config.instance_name,
                                                     transport=self.transport, refuse_with=refuse_with)
        finally:
            for stream in self.streams:
                stream.authenticating = False
        # From here on this client's lines concern its connection (core/logcontext.py).
        logcontext.set_activity(outcome.activity_id)
        if isinstance(outcome, records.Refusal):
            log.info("refused ticket from %s: %s (%s)", self.client_address, outcome.code, outcome.activity_id or "-")
            return outcome
        self.admission = outcome
        self.server.authenticated(*self.streams)
        return None

    async def open_relay(self, end: RelayEnd) -> records.Refusal | None:
        """Open this connection's relay in the rendezvous with the client's end attached, so bytes the
        client sends from now on wait there (bounded) for the host."""
        admission = self._admitted()
        try:
            relay = self.server.rendezvous.open(admission.activity_id, on_end=self._relay_ended,
                                                transport=self.transport)
        except RelayError:  # the same ticket's connection is already open on this instance
            code = records.ErrorCode.ConnectionFailedClientProtocolError
            message = "This connection is already open."
            await self.fail(code, message)
            return records.refusal_for(code, message, admission.activity_id)
        self.relay = relay
        await relay.attach(Side.CLIENT, end)
        return None

    async def find_host(self, request: Callable[[], records.Refusal | None],
                        keepalive: Callable[[], None]) -> records.Refusal | None:
        """Steps 7-9: ``request`` (blocking, run in a thread) checks the target and hands orchestration to
        the broker; then wait for the host's reverse connection, calling ``keepalive`` now and then.
        A refusal is already recorded; the caller answers the client and then calls ``abandon``."""
        admission = self._admitted()
        # Listen before asking: the broker may decide while ``request`` still runs (in process, eagerly).
        verdict = verdicts.waiters.register(admission.activity_id)
        try:
            refusal = await in_thread(request)()
            if refusal is None:
                refusal = await self._wait_for_host(verdict, keepalive)
        except Exception:  # noqa: BLE001 - the database or broker failed: answer rather than leave it waiting
            log.exception("setting up connection %s failed", self.activity_id)
            refusal = await self._internal_error()
        finally:
            verdicts.waiters.unregister(admission.activity_id, verdict)
        if refusal is not None:
            log.info("refused channel for %s: %s (%s)", self.client_address, refusal.code, refusal.activity_id)
        return refusal

    async def _wait_for_host(self, verdict: asyncio.Event, keepalive: Callable[[], None]) -> records.Refusal | None:
        """Wait for the host's reverse connection, the broker's verdict (``verdict`` is set when one is
        announced, broker/verdicts.py) or the deadline, whichever comes first."""
        relay, admission = self.relay, self._admitted()
        assert relay is not None  # open_relay came first
        config = self.server.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.host_arrival_timeout
        next_ping = loop.time() + PING_INTERVAL
        next_check = loop.time() + config.verdict_check_interval
        while True:
            now = loop.time()
            if now >= deadline:
                return await in_thread(records.host_did_not_arrive)(admission.connection_pk)
            await self.server.rendezvous.wait_paired(relay, min(deadline, next_ping, next_check) - now, verdict)
            if relay.paired.is_set():
                return None  # the host arrived (even if it has hung up since: the transport closes then)
            if relay.is_ended:
                if relay.result is not None and relay.result.ended_by is Side.CLIENT:
                    # Recorded by _relay_ended; nobody is left to hear this answer.
                    return records.refusal_for(records.ErrorCode.ConnectionFailedClientDisconnect, "",
                                               admission.activity_id)
                # The host's agent reported a failure (recorded with it): answer with that.
                outcome = await in_thread(records.setup_outcome)(admission.connection_pk)
                return outcome or records.refusal_for(records.ErrorCode.InternalError, relay.result.reason
                                                      if relay.result else "", admission.activity_id)
            if verdict.is_set() or loop.time() >= next_check:
                # Announced, or the safety net's turn (an announcement can be lost): read it once.
                verdict.clear()
                next_check = loop.time() + config.verdict_check_interval
                outcome = await in_thread(records.setup_outcome)(admission.connection_pk)
                if outcome is not None:
                    return outcome
            if loop.time() >= next_ping:
                keepalive()
                next_ping = loop.time() + PING_INTERVAL

    def _relay_ended(self, result: RelayResult) -> None:
        if self.relay is not None:
            metrics.relay_traffic.ended(self.relay)
        admission = self.admission
        if admission is not None and result.ended_by is Side.CLIENT and not self.paired:
            # The client left before the host arrived: that connection failed (and frees its host slot)
            # rather than ended. Decided before the end is recorded, in one thread, so the two cannot race.
            ended_at = timezone.now()

            def record() -> None:
                records.client_left(admission.connection_pk)
                records.finish(result, ended_at)

            self.server.record(record, f"the end of {admission.activity_id}")
        else:
            # After the start's record: a short session can end before its start is written.
            self.server.report_end(result, after=self._start_recorded)

    async def _internal_error(self) -> records.Refusal:
        code = records.ErrorCode.InternalError
        try:
            await self.fail(code, "The gateway could not complete the connection's setup.")
        except Exception:  # noqa: BLE001 - the database may be what failed; the log has the first error
            log.warning("could not record the failure of %s", self.activity_id)
        return records.refusal_for(code, "", self.activity_id)

    async def started(self) -> None:
        """The client has been told the channel is open: record the relay's start. The relay already runs,
        so its end may come first: that record waits for this one (``_relay_ended``), and a short session
        keeps its start, its CONNECTED step and its setup checkpoints."""
        recording = in_thread(records.mark_relay_started)(self._admitted().connection_pk, timezone.now())
        self._start_recorded = asyncio.ensure_future(recording)
        try:
            await asyncio.shield(self._start_recorded)
        except Exception:  # noqa: BLE001 - the relay runs on; only the checkpoint is missing
            log.exception("could not record the start of relay %s", self.activity_id)
        log.info("relay %s started (%s → host)", self.activity_id, self.client_address)

    async def fail(self, code: str, message: str) -> None:
        """Record a failure during setup (nothing happens to a connection that already ended)."""
        if self.admission is not None:
            await in_thread(records.fail)(self.admission.connection_pk, code, message)

    def abandon(self, reason: str) -> None:
        """End the relay after a refusal was answered (the gateway, not either side, ended it)."""
        if self.relay is not None:
            self.relay.end(None, reason)

    def end(self, side: Side, reason: str) -> None:
        if self.relay is not None:
            self.relay.end(side, reason)

    async def finish(self) -> None:
        """The client's connection is over: end the relay and free a host slot still reserved for it."""
        if self.relay is not None:
            if not self.relay.is_ended:
                self.relay.end(Side.CLIENT, "client connection ended")  # _relay_ended records the rest
        elif self.admission is not None:
            # Admitted, but gone before asking for a channel: the connection failed as the client's doing.
            await in_thread(records.client_left)(self.admission.connection_pk)

    def _admitted(self) -> records.Admission:
        if self.admission is None:
            raise RuntimeError("the client's ticket has not been admitted")  # a transport bug, not the client's
        return self.admission
