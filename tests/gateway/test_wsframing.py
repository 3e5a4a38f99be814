"""WebSocket framing after the hand-made upgrade: FreeRDP's masked frames in, unmasked frames out (§4.3)."""
from __future__ import annotations

import struct

import pytest

from gateway import rdg
from gateway.rdg_session import ChannelCreateRequested, RdgServerSession, TunnelCreateRequested
from gateway.wsframing import ServerWebSocket
from tests.gateway import vectors as v

BINARY, TEXT, CONT, CLOSE, PING, PONG = 0x2, 0x1, 0x0, 0x8, 0x9, 0xA


def client_frame(payload: bytes, *, opcode: int = BINARY, fin: bool = True,
                 key: bytes | None = b"\x37\xfa\x21\x3d") -> bytes:
    """A client frame the way FreeRDP 2.11 writes one (rdg_write_websocket): FIN, masked, 7/16/64-bit length."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if key is not None else 0
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 0x10000:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if key is None:
        return head + payload
    return head + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def close_code_sent(data: bytes) -> int:
    """The status code of the (unmasked) close frame at the start of ``data``."""
    assert data[0] == 0x80 | CLOSE and not data[1] & 0x80
    return struct.unpack("!H", data[2:4])[0]


def test_it_unmasks_freerdps_binary_frames_of_every_length_form():
    ws = ServerWebSocket()
    for payload in (b"", v.HANDSHAKE_REQUEST, bytes(range(256)) * 100, b"\x5a" * 65545):
        assert ws.receive_data(client_frame(payload)) == ([payload] if payload else [])
    assert ws.data_to_send() == b""
    assert ws.is_open


def test_server_frames_are_unmasked_binary_with_the_shortest_length_form():
    ws = ServerWebSocket()
    assert ws.send_binary(b"abc") == b"\x82\x03abc"
    assert ws.send_binary(b"x" * 16000)[:4] == b"\x82\x7e\x3e\x80"
    framed = ws.send_binary(b"y" * 70000)
    assert framed[:10] == b"\x82\x7f" + struct.pack("!Q", 70000)
    assert len(framed) == 10 + 70000


def test_frames_split_across_reads_and_several_in_one_read_come_out_in_order():
    ws = ServerWebSocket()
    stream = client_frame(b"first") + client_frame(b"second" * 100) + client_frame(b"third")
    out = []
    for i in range(0, len(stream), 7):
        out += ws.receive_data(stream[i:i + 7])
    assert out == [b"first", b"second" * 100, b"third"]
    assert ServerWebSocket().receive_data(stream) == [b"first", b"second" * 100, b"third"]


def test_fragments_of_a_binary_message_are_delivered_as_they_arrive():
    ws = ServerWebSocket()
    assert ws.receive_data(client_frame(b"ab", fin=False)) == [b"ab"]
    assert ws.receive_data(client_frame(b"cd", opcode=CONT, fin=False)) == [b"cd"]
    assert ws.receive_data(client_frame(b"ef", opcode=CONT)) == [b"ef"]


def test_a_ping_is_answered_with_an_unmasked_pong_carrying_its_payload():
    ws = ServerWebSocket()
    assert ws.receive_data(client_frame(b"are you there", opcode=PING)) == []
    assert ws.data_to_send() == b"\x8a\x0dare you there"


def test_our_ping_is_an_unmasked_control_frame():
    assert ServerWebSocket().send_ping(b"p1") == b"\x89\x02p1"


def test_an_unmasked_client_frame_fails_the_connection():
    ws = ServerWebSocket()
    assert ws.receive_data(client_frame(b"hello", key=None)) == []
    assert close_code_sent(ws.data_to_send()) == 1002
    assert ws.should_close_transport
    assert "masking" in str(ws.failure)


def test_a_text_frame_is_refused_as_unsupported_data():
    ws = ServerWebSocket()
    assert ws.receive_data(client_frame(b"hi", opcode=TEXT)) == []
    assert close_code_sent(ws.data_to_send()) == 1003
    assert ws.should_close_transport


def test_an_oversized_frame_is_refused_from_its_header():
    ws = ServerWebSocket(max_frame_size=1024)
    header_only = client_frame(b"z" * 1025)[:8]  # the payload never needs to arrive
    assert ws.receive_data(header_only) == []
    assert close_code_sent(ws.data_to_send()) == 1009
    assert ws.should_close_transport
    assert ws.receive_data(b"z" * 1025) == []  # further bytes are discarded


def test_a_client_close_is_echoed_and_ends_the_connection():
    ws = ServerWebSocket()
    assert ws.receive_data(client_frame(struct.pack("!H", 1000), opcode=CLOSE)) == []
    assert ws.data_to_send() == b"\x88\x02\x03\xe8"
    assert ws.should_close_transport
    assert ws.send_binary(b"late") == b""


def test_after_our_close_freerdps_masked_pong_reply_is_harmless():
    ws = ServerWebSocket()
    assert ws.send_close(1000) == b"\x88\x02\x03\xe8"
    assert ws.should_close_transport
    # FreeRDP answers a close with a masked pong carrying the close code (rdg_websocket_reply_close).
    assert ws.receive_data(client_frame(struct.pack("!H", 1000), opcode=PONG)) == []
    assert ws.send_binary(b"late") == b""
    assert ws.send_close() == b""


def test_eof_without_a_close_frame_ends_the_connection_abnormally():
    ws = ServerWebSocket()
    ws.receive_data(client_frame(b"partial")[:4])
    ws.receive_eof()
    ws.data_to_send()
    assert ws.should_close_transport
    assert ws.close_code == 1006


def test_freerdps_setup_travels_over_frames_into_the_session():
    """The three layers together: masked frames -> payloads -> TSGU session -> answers -> frames."""
    ws = ServerWebSocket()
    session = RdgServerSession()
    replies = b""
    for packet in v.CLIENT_SETUP:
        for payload in ws.receive_data(client_frame(packet)):
            received = session.receive_data(payload)
            for event in received.events:
                if isinstance(event, TunnelCreateRequested):
                    received.packets.extend(session.accept_tunnel(10, capabilities=rdg.Capability.IDLE_TIMEOUT))
                elif isinstance(event, ChannelCreateRequested):
                    received.packets.extend(session.accept_channel(1))
            for reply in received.packets:
                replies += ws.send_binary(reply)
    expected = [v.HANDSHAKE_RESPONSE, v.TUNNEL_RESPONSE_RDPGW, v.TUNNEL_AUTH_RESPONSE_MINIMAL, v.CHANNEL_RESPONSE_ID_1]
    assert replies == b"".join(b"\x82" + bytes([len(packet)]) + packet for packet in expected)


@pytest.mark.parametrize("size", [125, 126, 65535, 65536])
def test_payload_sizes_at_the_length_form_boundaries_round_trip(size):
    payload = bytes(i % 251 for i in range(size))
    assert ServerWebSocket().receive_data(client_frame(payload)) == [payload]
