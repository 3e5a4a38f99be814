"""The gateway listener serves every kind of client, with the same tickets, records and errors.

Python clients over real sockets against a GatewayServer in this process (tests/connector/gatewaybed.py):
the RD Gateway WebSocket transport and the legacy two-connection HTTP transport run the same MS-TSGU
conversations; the raw WebSocket transport (``wst``) relays RDP bytes with a Bearer ticket. Bad input
gets clear HTTP errors or protocol codes, a record where a ticket was presented, and never a hang.
"""
from __future__ import annotations

import abc
import asyncio
import uuid

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Opcode
from websockets.protocol import Protocol, State
from websockets.protocol import Side as WsSide

from broker.choices import ConnectionState, EndReason
from core.tickets import revoke_ticket, verify_connection_ticket
from gateway import rdg
from gateway.rdg import ReturnCode
from gateway.records import as_hresult
from gateway.transports import wst
from tests.connector.gatewaybed import (  # noqa: F401  (fixtures)
    RECEIVE_TIMEOUT,
    Bed,
    bed,
    concurrent_sqlite,
    db,
    eager_tasks,
    estate_rows,
    gateway_ssl,
    in_memory_channel_layer,
)
from wire import x224
from wire.errors import ERRORS, describe

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/remoteDesktopGateway/"
FREERDP2_KEY = "NF_L^XYECXCQPRX"  # what FreeRDP 2.11 sends (PROTOCOLS.md §4.2)
X224 = b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x0b\x00\x00\x00"  # a connection request


# --- clients ------------------------------------------------------------------------------------


async def read_response_head(reader: asyncio.StreamReader) -> tuple[int, str]:
    """(status, the head's text); the body is left in the reader."""
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
    text = head.decode("latin-1")
    return int(text.split(" ", 2)[1]), text


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        return await reader.read()


async def http_exchange(port: int, request: bytes) -> tuple[int, str, bytes]:
    """Send raw bytes, read the answer until the server closes: (status, head, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        status, head = await read_response_head(reader)
        return status, head, await read_to_end(reader)
    finally:
        writer.close()


def request_head(method: str, headers: dict[str, str], path: str = PATH) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class TsguClient(abc.ABC):
    """What both RD Gateway transports give a client: send a TSGU packet, receive the next one."""

    def __init__(self) -> None:
        self._incoming = bytearray()

    @abc.abstractmethod
    async def send(self, packet: bytes) -> None:
        """Send bytes to the gateway as one frame (WebSocket) or one chunk (legacy)."""

    @abc.abstractmethod
    async def _more(self) -> bool:
        """Read more of the server's packet stream into ``_incoming``; False at its end."""

    async def receive(self) -> rdg.Packet | None:
        """The next packet from the gateway, or None once it closed the connection."""
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while True:
                packet, consumed = rdg.parse_packet(self._incoming)
                if packet is not None:
                    del self._incoming[:consumed]
                    return packet
                if not await self._more():
                    return None

    async def receive_until_closed(self) -> list[rdg.Packet]:
        packets = []
        while (packet := await self.receive()) is not None:
            packets.append(packet)
        return packets

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection(s) without a goodbye, as FreeRDP does."""


class WebSocketTsguClient(TsguClient):
    """FreeRDP 2.11's WebSocket form: RDG_OUT_DATA upgrade with its 15-character key, masked frames."""

    transport = "websocket"

    @classmethod
    async def open(cls, port: int) -> WebSocketTsguClient:
        self = cls()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write(request_head("RDG_OUT_DATA", {
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": FREERDP2_KEY, "RDG-Connection-Id": f"{{{uuid.uuid4()}}}",
            "RDG-Auth-Scheme": "PAA", "Content-Length": "0",
        }))
        status, _ = await read_response_head(self.reader)
        assert status == 101
        self.protocol = Protocol(WsSide.CLIENT, state=State.OPEN, max_size=None)
        return self

    async def send(self, packet: bytes) -> None:
        self.protocol.send_binary(packet)
        self._flush()

    def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            self.writer.write(data)

    async def _more(self) -> bool:
        data = await self.reader.read(65536)
        if not data:
            return False
        self.protocol.receive_data(data)
        for frame in self.protocol.events_received():
            if frame.opcode is Opcode.BINARY:
                self._incoming += frame.data
        self._flush()  # pongs
        return True

    async def close(self) -> None:
        self.writer.close()


class LegacyTsguClient(TsguClient):
    """FreeRDP's ``/gt:http,no-websockets`` form: an OUT response to read, a chunked IN upload."""

    transport = "legacy"

    @classmethod
    async def open(cls, port: int, connection_id: str | None = None) -> LegacyTsguClient:
        self = cls()
        self.connection_id = connection_id or f"{{{uuid.uuid4()}}}"
        self.out_reader, self.out_writer = await open_out(port, self.connection_id)
        self.in_reader, self.in_writer = await open_in(port, self.connection_id)
        return self

    async def send(self, packet: bytes) -> None:
        self.in_writer.write(b"%X\r\n" % len(packet) + packet + b"\r\n")

    async def _more(self) -> bool:
        data = await self.out_reader.read(65536)
        self._incoming += data
        return bool(data)

    async def close(self) -> None:
        self.in_writer.close()
        self.out_writer.close()


def legacy_headers(connection_id: str, **extra: str) -> dict[str, str]:
    return {"Connection": "Keep-Alive", "RDG-Connection-Id": connection_id, "RDG-Auth-Scheme": "PAA", **extra}


async def open_out(port: int, connection_id: str, local_host: str = "127.0.0.1"):
    """The OUT half: 200 without a length, then the 10-byte seed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local_host, 0))
    writer.write(request_head("RDG_OUT_DATA", legacy_headers(connection_id, **{"Content-Length": "0"})))
    status, head = await read_response_head(reader)
    assert status == 200 and "content-length" not in head.lower(), head
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        assert len(await reader.readexactly(10)) == 10  # the seed
    return reader, writer


async def open_in(port: int, connection_id: str, local_host: str = "127.0.0.1"):
    """The IN half: the empty request, its 200, then the chunked re-send the packets follow."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local_host, 0))
    writer.write(request_head("RDG_IN_DATA", legacy_headers(connection_id, **{"Content-Length": "0"})))
    status, head = await read_response_head(reader)
    assert status == 200 and "content-length: 0" in head.lower(), head
    writer.write(request_head("RDG_IN_DATA", legacy_headers(connection_id, **{"Transfer-Encoding": "chunked"})))
    return reader, writer


TRANSPORTS = [WebSocketTsguClient, LegacyTsguClient]


@pytest.fixture(params=TRANSPORTS, ids=lambda client: client.transport)
def tsgu(request) -> type[TsguClient]:
    return request.param


async def tunnel_to(client: TsguClient, ticket: str, resource: str = "pool-a") -> rdg.ChannelResponse:
    """Handshake, tunnel and channel, as FreeRDP does; fails the test on any refusal before the channel."""
    await client.send(rdg.build_handshake_request())
    handshake = await client.receive()
    assert isinstance(handshake, rdg.HandshakeResponse) and handshake.error_code == 0, handshake
    await client.send(rdg.build_tunnel_create(ticket))
    tunnel = await client.receive()
    assert isinstance(tunnel, rdg.TunnelResponse) and tunnel.status_code == 0, tunnel
    await client.send(rdg.build_tunnel_auth("test-client"))
    auth = await client.receive()
    assert isinstance(auth, rdg.TunnelAuthResponse) and auth.error_code == 0, auth
    await client.send(rdg.build_channel_create([resource], 3389))
    channel = await client.receive()
    assert isinstance(channel, rdg.ChannelResponse), channel
    return channel


def refused_with(code: str) -> int:
    """The HRESULT a CHANNEL_RESPONSE carries for a refusal with this error code."""
    return as_hresult(int(describe(code).gateway_status))


# --- the two RD Gateway transports: one conversation, one set of records -------------------------


async def test_a_tunnel_relays_bytes_both_ways_once_the_host_arrives(bed: Bed, tsgu):
    client = await tsgu.open(bed.port)
    channel = await tunnel_to(client, bed.ticket())
    assert channel.error_code == 0 and channel.channel_id == 1
    arrival = await bed.simulated.next_arrival()

    await client.send(rdg.build_data(X224))
    assert await arrival.end.read_exactly(len(X224)) == X224
    await arrival.send(b"confirm from the host")
    answer = await client.receive()
    assert answer == rdg.DataPacket(b"confirm from the host")

    # The relay's start is recorded just after the client was told (off the loop).
    connection = await bed.connection_when(lambda c: c.state == ConnectionState.CONNECTED)
    assert str(connection.activity_id) == arrival.activity_id and connection.client_name == "test-client"
    await client.close()
    ended = await bed.connection_when(lambda c: c.state == ConnectionState.ENDED)
    assert ended.end_reason == EndReason.CLIENT_CLOSED
    assert (ended.bytes_client_to_host, ended.bytes_host_to_client) == (len(X224), 21)
    assert await arrival.end.wait_closed()


async def test_the_host_hanging_up_closes_the_channel(bed: Bed, tsgu):
    client = await tsgu.open(bed.port)
    await tunnel_to(client, bed.ticket())
    arrival = await bed.simulated.next_arrival()

    arrival.hang_up()

    assert await client.receive_until_closed() == [rdg.CloseChannel(ReturnCode.S_OK)]
    ended = await bed.connection_when(lambda c: c.state == ConnectionState.ENDED)
    assert ended.end_reason == EndReason.HOST_CLOSED


async def test_a_host_that_speaks_at_once_is_heard_after_the_channel_response(bed: Bed, tsgu):
    async def speak(arrival):
        await arrival.send(b"hello first")

    bed.simulated.on_arrival = speak
    client = await tsgu.open(bed.port)
    assert (await tunnel_to(client, bed.ticket())).error_code == 0
    assert await client.receive() == rdg.DataPacket(b"hello first")
    await client.close()


async def test_a_host_that_hangs_up_at_once_opens_and_closes_the_channel(bed: Bed, tsgu):
    async def hang_up(arrival):
        arrival.hang_up()

    bed.simulated.on_arrival = hang_up
    client = await tsgu.open(bed.port)
    assert (await tunnel_to(client, bed.ticket())).error_code == 0
    assert await client.receive_until_closed() == [rdg.CloseChannel(ReturnCode.S_OK)]


async def test_requests_sent_together_are_answered_in_order(bed: Bed, tsgu):
    client = await tsgu.open(bed.port)
    await client.send(rdg.build_handshake_request() + rdg.build_tunnel_create(bed.ticket()))  # one frame/chunk
    assert isinstance(await client.receive(), rdg.HandshakeResponse)
    assert isinstance(await client.receive(), rdg.TunnelResponse)
    await client.close()


async def test_a_forged_ticket_is_refused_at_tunnel_create_without_a_record(bed: Bed, tsgu):
    # Nothing in a forged ticket proves a user: unauthenticated requests write nothing (gateway/preauth.py).
    client = await tsgu.open(bed.port)
    await client.send(rdg.build_handshake_request())
    await client.receive()
    ticket = bed.ticket()
    await client.send(rdg.build_tunnel_create(ticket[:-2] + ("AA" if ticket[-2:] != "AA" else "BB")))

    answer = await client.receive_until_closed()

    assert answer == [rdg.TunnelResponse(0, ReturnCode.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED, 0,
                                         None, None, None)]
    assert await bed.last_connection() is None


async def test_a_revoked_ticket_is_refused_at_tunnel_create_and_recorded(bed: Bed, tsgu):
    # Ours, signed, naming a user: worth a record support can find by its activity id.
    ticket = bed.ticket()
    claims = await db(verify_connection_ticket)(ticket)
    await db(revoke_ticket)(claims.jti, claims.expires_at)
    client = await tsgu.open(bed.port)
    await client.send(rdg.build_handshake_request())
    await client.receive()
    await client.send(rdg.build_tunnel_create(ticket))

    answer = await client.receive_until_closed()

    assert answer == [rdg.TunnelResponse(0, ReturnCode.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED, 0,
                                         None, None, None)]
    connection = await bed.last_connection()
    assert connection.state == ConnectionState.FAILED and connection.error_code == "ConnectionFailedTicketRevoked"


async def test_a_channel_for_another_pool_is_refused_and_recorded(bed: Bed, tsgu):
    client = await tsgu.open(bed.port)
    channel = await tunnel_to(client, bed.ticket(), resource="pool-b")
    assert channel.error_code == refused_with("ConnectionFailedResourceMismatch")
    assert await client.receive_until_closed() == []
    assert (await bed.last_connection()).error_code == "ConnectionFailedResourceMismatch"


async def test_a_pool_without_an_available_host_refuses_the_channel(bed: Bed, tsgu):
    await bed.drain()
    client = await tsgu.open(bed.port)
    channel = await tunnel_to(client, bed.ticket())
    assert channel.error_code == refused_with("ConnectionFailedNoHealthyRdshAvailable")
    connection = await bed.last_connection()
    assert connection.state == ConnectionState.FAILED
    assert connection.error_code == "ConnectionFailedNoHealthyRdshAvailable"


async def test_a_host_that_never_dials_in_fails_the_connection_and_frees_its_slot(bed: Bed, tsgu):
    await bed.simulated.stop()  # the connect order goes out; nobody answers it
    bed.server.config.host_arrival_timeout = 0.5
    client = await tsgu.open(bed.port)
    channel = await tunnel_to(client, bed.ticket())
    assert channel.error_code == refused_with("ConnectionFailedReverseConnectTimeout")
    connection = await bed.last_connection()
    assert connection.error_code == "ConnectionFailedReverseConnectTimeout" and connection.ended_at
    assert len(bed.server.rendezvous) == 0


async def test_a_client_without_an_access_token_is_told_so_in_the_handshake(bed: Bed, tsgu):
    client = await tsgu.open(bed.port)
    await client.send(rdg.build_handshake_request(rdg.ExtendedAuth.SSPI_NTLM))
    answer = await client.receive_until_closed()
    assert len(answer) == 1 and isinstance(answer[0], rdg.HandshakeResponse)
    assert answer[0].error_code == ReturnCode.E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD


async def test_a_packet_out_of_order_after_admission_is_recorded_as_a_protocol_error(bed: Bed, tsgu):
    client = await tsgu.open(bed.port)
    await client.send(rdg.build_handshake_request())
    await client.receive()
    await client.send(rdg.build_tunnel_create(bed.ticket()))
    await client.receive()
    await client.send(rdg.build_channel_create(["pool-a"], 3389))  # TUNNEL_AUTH skipped

    answer = await client.receive_until_closed()

    assert answer == [rdg.ChannelResponse(ReturnCode.E_PROXY_INTERNALERROR, 0, None)]
    connection = await bed.last_connection()
    assert connection.error_code == "ConnectionFailedClientProtocolError"


async def test_a_client_that_goes_silent_during_setup_is_closed_and_recorded(bed: Bed, tsgu):
    bed.server.config.setup_idle_timeout = 0.3
    client = await tsgu.open(bed.port)
    await client.send(rdg.build_handshake_request())
    await client.receive()
    await client.send(rdg.build_tunnel_create(bed.ticket()))
    await client.receive()

    assert await client.receive_until_closed() == []
    connection = await bed.connection_when(lambda c: c.state == ConnectionState.FAILED)
    assert connection.error_code == "ConnectionFailedClientProtocolError"


# --- the legacy transport's own rules ----------------------------------------------------------------


async def test_legacy_halves_pair_in_either_order(bed: Bed):
    connection_id = f"{{{uuid.uuid4()}}}"
    in_opening = asyncio.ensure_future(open_in(bed.port, connection_id))
    await asyncio.sleep(0)
    client = LegacyTsguClient()
    client.connection_id = connection_id
    client.out_reader, client.out_writer = await open_out(bed.port, connection_id)
    client.in_reader, client.in_writer = await in_opening

    channel = await tunnel_to(client, bed.ticket())

    assert channel.error_code == 0
    await client.close()


async def test_a_half_open_legacy_pair_times_out_and_is_freed(bed: Bed):
    bed.server.config.legacy_pair_timeout = 0.3
    reader, writer = await open_out(bed.port, "{half-open}")
    assert len(bed.server.legacy_pairs) == 1

    assert await read_to_end(reader) == b""  # the server closed the OUT connection

    assert len(bed.server.legacy_pairs) == 0
    writer.close()


async def test_a_half_open_pair_whose_client_leaves_is_freed_at_once(bed: Bed):
    _, writer = await open_out(bed.port, "{left-early}")
    assert len(bed.server.legacy_pairs) == 1
    writer.close()
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while len(bed.server.legacy_pairs):
            await asyncio.sleep(0.02)


async def test_a_second_rdg_in_data_for_the_same_id_is_refused_with_409(bed: Bed):
    client = await LegacyTsguClient.open(bed.port)
    status, _, body = await http_exchange(bed.port, request_head(
        "RDG_IN_DATA", legacy_headers(client.connection_id, **{"Content-Length": "0"})))
    assert status == 409 and b"already open" in body
    assert (await tunnel_to(client, bed.ticket())).error_code == 0  # the first pair is unharmed
    await client.close()


async def test_an_rdg_in_data_from_another_address_is_refused_with_403(bed: Bed):
    connection_id = f"{{{uuid.uuid4()}}}"
    _, writer = await open_out(bed.port, connection_id, local_host="127.0.0.1")
    reader, other = await asyncio.open_connection("127.0.0.1", bed.port, local_addr=("127.0.0.2", 0))
    other.write(request_head("RDG_IN_DATA", legacy_headers(connection_id, **{"Content-Length": "0"})))
    status, _ = await read_response_head(reader)
    assert status == 403
    writer.close()
    other.close()


@pytest.mark.parametrize("chunk, complaint", [
    (b"zz\r\n", b"invalid chunk size"),
    (b"FFFFFF\r\n", b"exceeds"),
    (b"4\r\nabcdXX", b"not followed by CRLF"),
])
async def test_a_malformed_upload_after_admission_is_answered_400_and_recorded(bed: Bed, chunk, complaint):
    client = await LegacyTsguClient.open(bed.port)
    await client.send(rdg.build_handshake_request())
    await client.receive()
    await client.send(rdg.build_tunnel_create(bed.ticket()))
    await client.receive()

    client.in_writer.write(chunk)

    status, _ = await read_response_head(client.in_reader)
    assert status == 400 and complaint in await read_to_end(client.in_reader)
    assert await client.receive_until_closed() == []  # the OUT half is closed too
    connection = await bed.connection_when(lambda c: c.state == ConnectionState.FAILED)
    assert connection.error_code == "ConnectionFailedClientProtocolError"
    assert len(bed.server.legacy_pairs) == 0


@pytest.mark.parametrize("method, headers, status, complaint", [
    ("RDG_OUT_DATA", {"Content-Length": "0"}, 400, b"RDG-Connection-Id"),
    ("RDG_IN_DATA", {"RDG-Connection-Id": "{x}", "Content-Length": "12"}, 400, b"chunked"),
    ("RDG_OUT_DATA", {"RDG-Connection-Id": "{bad id!}", "Content-Length": "0"}, 400, b"malformed"),
    ("RDG_IN_DATA", {"RDG-Connection-Id": "{x}", "Connection": "Upgrade", "Upgrade": "websocket",
                     "Sec-WebSocket-Key": FREERDP2_KEY}, 400, b"never upgraded"),
])
async def test_malformed_legacy_requests_get_clear_http_errors(bed: Bed, method, headers, status, complaint):
    answer, _, body = await http_exchange(bed.port, request_head(method, headers))
    assert answer == status and complaint in body


# --- the listener's dispatch -------------------------------------------------------------------------


@pytest.mark.parametrize("request_bytes, status, complaint", [
    (request_head("GET", {}), 400, b"must be a WebSocket upgrade"),
    (request_head("GET", {}, path="/elsewhere/"), 404, b"/remoteDesktopGateway/"),
    (request_head("PUT", {}), 405, b"not allowed"),
    (b"\x16\x03\x01 not http at all\r\n\r\n", 400, b"malformed"),
])
async def test_requests_the_gateway_does_not_serve_get_clear_http_errors(bed: Bed, request_bytes, status, complaint):
    answer, _, body = await http_exchange(bed.port, request_bytes)
    assert answer == status and complaint in body


# --- raw RDP over a standard WebSocket (wst) ---------------------------------------------------------


def wst_url(bed: Bed) -> str:
    return f"ws://127.0.0.1:{bed.port}{PATH}"


def bearer(ticket: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ticket}"}


async def test_raw_websocket_relays_rdp_to_the_tickets_pool(bed: Bed):
    async with ws_connect(wst_url(bed), additional_headers=bearer(bed.ticket()), compression=None) as ws:
        await ws.send(X224)  # sent at once; waits in the relay for the host
        arrival = await bed.simulated.next_arrival()
        assert await arrival.end.read_exactly(len(X224)) == X224
        await arrival.send(b"confirm")
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            assert await ws.recv() == b"confirm"
        connection = await bed.connection_when(lambda c: c.state == ConnectionState.CONNECTED)
        assert connection.host_pool_id == bed.pool.pk and connection.session_host_id == bed.host.pk
    ended = await bed.connection_when(lambda c: c.state == ConnectionState.ENDED)
    assert ended.end_reason == EndReason.CLIENT_CLOSED
    assert (ended.bytes_client_to_host, ended.bytes_host_to_client) == (len(X224), 7)


async def test_raw_websocket_closes_normally_when_the_host_hangs_up(bed: Bed):
    async with ws_connect(wst_url(bed), additional_headers=bearer(bed.ticket()), compression=None) as ws:
        arrival = await bed.simulated.next_arrival()
        await bed.connection_when(lambda c: c.state == ConnectionState.CONNECTED)
        arrival.hang_up()
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            await ws.wait_closed()
        assert ws.close_code == 1000


async def test_raw_websocket_closes_normally_when_the_host_hangs_up_at_once(bed: Bed):
    async def hang_up(arrival):
        arrival.hang_up()

    bed.simulated.on_arrival = hang_up
    async with ws_connect(wst_url(bed), additional_headers=bearer(bed.ticket()), compression=None) as ws:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            await ws.wait_closed()
    assert ws.close_code == 1000


@pytest.mark.parametrize("headers, code", [
    ({}, "ConnectionFailedTicketInvalid"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "ConnectionFailedTicketInvalid"),
    ({"Authorization": "Bearer not-a-ticket"}, "ConnectionFailedTicketInvalid"),
])
async def test_raw_websocket_without_a_good_ticket_is_400_naming_the_code_without_a_record(bed: Bed, headers, code):
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(wst_url(bed), additional_headers=headers)
    response = refused.value.response
    # 400, not 401: FreeRDP 3 shows the reason phrase of every status but 200/401/403 (wst.py).
    assert response.status_code == 400 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.reason_phrase == f"{code} activity -"
    assert response.body.decode().startswith(f"{code}: ") and "(activity -)" in response.body.decode()
    assert await bed.last_connection() is None


async def test_raw_websocket_with_a_revoked_ticket_is_400_with_its_activity_id(bed: Bed):
    ticket = bed.ticket()
    claims = await db(verify_connection_ticket)(ticket)
    await db(revoke_ticket)(claims.jti, claims.expires_at)
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(wst_url(bed), additional_headers=bearer(ticket))
    connection = await bed.last_connection()
    assert refused.value.response.status_code == 400
    assert refused.value.response.reason_phrase == f"ConnectionFailedTicketRevoked activity {connection.activity_id}"
    assert connection.error_code == "ConnectionFailedTicketRevoked"


async def test_raw_websocket_for_a_disabled_user_is_400(bed: Bed):
    ticket = bed.ticket()
    bed.user.is_active = False
    await db(bed.user.save)()
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(wst_url(bed), additional_headers=bearer(ticket))
    assert refused.value.response.status_code == 400
    assert refused.value.response.reason_phrase.startswith("ConnectionFailedUserNotAuthorized activity ")
    assert refused.value.response.body.decode().startswith("ConnectionFailedUserNotAuthorized: ")


async def test_raw_websocket_answers_503_before_the_upgrade_when_no_host_is_available(bed: Bed):
    await bed.drain()
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(wst_url(bed), additional_headers=bearer(bed.ticket()))
    connection = await bed.last_connection()
    response = refused.value.response
    assert response.status_code == 503
    assert response.reason_phrase == f"ConnectionFailedNoHealthyRdshAvailable activity {connection.activity_id}"
    assert response.body.decode().startswith("ConnectionFailedNoHealthyRdshAvailable: ")
    assert connection.error_code == "ConnectionFailedNoHealthyRdshAvailable"


async def test_raw_websocket_answers_504_before_the_upgrade_when_the_host_does_not_arrive(bed: Bed):
    await bed.simulated.stop()
    bed.server.config.host_arrival_timeout = 0.5  # within the upgrade's hold
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(wst_url(bed), additional_headers=bearer(bed.ticket()))
    assert refused.value.response.status_code == 504
    assert refused.value.response.reason_phrase.startswith("ConnectionFailedReverseConnectTimeout activity ")
    assert (await bed.last_connection()).error_code == "ConnectionFailedReverseConnectTimeout"


async def test_a_host_slower_than_the_hold_gets_the_upgrade_and_a_refusal_is_an_x224_disconnect_then_4504(
        bed: Bed, monkeypatch):
    monkeypatch.setattr(wst, "UPGRADE_HOLD", 0.2)
    await bed.simulated.stop()
    bed.server.config.host_arrival_timeout = 1.0
    async with ws_connect(wst_url(bed), additional_headers=bearer(bed.ticket())) as ws:
        await ws.send(X224)  # the client's Connection Request, as FreeRDP sends it after the 101
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            answer = await ws.recv()
        assert x224.is_disconnect_request(answer)  # what FreeRDP 3 acts on (it ignores the close)
        with pytest.raises(ConnectionClosedError):
            async with asyncio.timeout(RECEIVE_TIMEOUT):
                await ws.recv()
    assert ws.close_code == 4504 and ws.close_reason.startswith("ConnectionFailedReverseConnectTimeout activity ")
    assert (await bed.last_connection()).error_code == "ConnectionFailedReverseConnectTimeout"


def test_every_close_code_has_an_http_status_freerdp3_shows_the_reason_of():
    for close_code, status in wst.HTTP_STATUSES.items():
        assert status not in (200, 401, 403) and 400 <= status < 600, (close_code, status)


@pytest.mark.parametrize("entry", [entry for entry in ERRORS.values()
                                   if entry.stage in ("ticket", "authorization", "placement", "host")
                                   and entry.code != "ConnectionFailedClientDisconnect"],
                         ids=lambda entry: entry.code)
def test_every_setup_error_has_its_own_close_code(entry):
    # The client is gone for ConnectionFailedClientDisconnect; every other setup failure is told apart.
    assert wst.close_code_for(entry.code) != wst.CLOSE_INTERNAL_ERROR
    assert 4400 <= wst.close_code_for(entry.code) < 4600


async def test_raw_websocket_refuses_a_non_rfc6455_key(bed: Bed):
    status, _, body = await http_exchange(bed.port, request_head("GET", {
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": FREERDP2_KEY, **bearer(bed.ticket())}))
    assert status == 400 and b"RFC 6455" in body


async def test_a_client_leaving_before_the_host_arrives_frees_the_reservation(bed: Bed):
    await bed.simulated.stop()
    # The upgrade is held while the host is awaited: the client hangs up before any answer.
    reader, writer = await asyncio.open_connection("127.0.0.1", bed.port)
    writer.write(request_head("GET", {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **bearer(bed.ticket())}))
    await bed.connection_when(lambda c: c.host_notified_at is not None)
    writer.close()
    connection = await bed.connection_when(lambda c: c.state == ConnectionState.FAILED)
    assert connection.error_code == "ConnectionFailedClientDisconnect"
    assert len(bed.server.rendezvous) == 0
