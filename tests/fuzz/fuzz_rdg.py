"""MS-TSGU: the packet parser (``gateway/rdg.py``) and the server session that consumes a client's bytes
(``gateway/rdg_session.py``).

What holds for any input:
- ``parse_packet`` returns ``(packet, packetLength)``, or ``(None, 0)`` while the packet is incomplete, and
  raises ``rdg.ProtocolError`` (with a 32-bit code) and nothing else; it never takes more than
  ``MAX_PACKET_LENGTH`` bytes for one packet.
- A parsed packet survives a round trip: ``rdg``'s own builder makes bytes that parse to the same fields.
- The session never raises, whatever the client sends and however it is split: it answers with whole
  packets a client can parse, ends at most once, says nothing after it ended, and hands on no more DATA
  bytes than it was fed. The harness plays the transport: it accepts the tunnel and the channel (refusing
  the token ``refuse`` and port 0), echoes DATA, and closes the channel when the target sends ``close``.
"""
from __future__ import annotations

import dataclasses

from gateway import rdg
from gateway.rdg_session import ChannelCreateRequested, Closed, Data, RdgServerSession, TunnelCreateRequested

# What the server sends; every packet the session answers with must be one of these.
SERVER_PACKETS = (rdg.HandshakeResponse, rdg.TunnelResponse, rdg.TunnelAuthResponse, rdg.ChannelResponse,
                  rdg.DataPacket, rdg.Keepalive, rdg.ServiceMessage, rdg.CloseChannel, rdg.CloseChannelResponse)

# Each packet type's builder, called with the parsed packet's fields.
BUILDERS = {
    rdg.HandshakeRequest: lambda p: rdg.build_handshake_request(
        p.extended_auth, version_major=p.version_major, version_minor=p.version_minor,
        client_version=p.client_version),
    rdg.HandshakeResponse: lambda p: rdg.build_handshake_response(
        p.error_code, extended_auth=p.extended_auth, version_major=p.version_major,
        version_minor=p.version_minor, server_version=p.server_version),
    rdg.TunnelCreate: lambda p: rdg.build_tunnel_create(
        p.paa_cookie, capabilities=p.capabilities, reauth_tunnel_context=p.reauth_tunnel_context),
    rdg.TunnelResponse: lambda p: rdg.build_tunnel_response(
        p.status_code, tunnel_id=p.tunnel_id, capabilities=p.capabilities, server_version=p.server_version),
    rdg.TunnelAuth: lambda p: rdg.build_tunnel_auth(p.client_name),
    rdg.TunnelAuthResponse: lambda p: rdg.build_tunnel_auth_response(
        p.error_code, redirection_flags=p.redirection_flags, idle_timeout_minutes=p.idle_timeout_minutes),
    rdg.ChannelCreate: lambda p: rdg.build_channel_create(
        p.resources, p.port, alt_resources=p.alt_resources, protocol=p.protocol),
    rdg.ChannelResponse: lambda p: rdg.build_channel_response(p.error_code, channel_id=p.channel_id),
    rdg.DataPacket: lambda p: rdg.build_data(p.data),
    rdg.ServiceMessage: lambda p: rdg.build_service_message(p.message),
    rdg.Keepalive: lambda p: rdg.build_keepalive(),
    rdg.CloseChannel: lambda p: rdg.build_close_channel(p.status_code),
    rdg.CloseChannelResponse: lambda p: rdg.build_close_channel_response(p.status_code),
}

# Fields a builder does not reproduce as read: fieldsPresent follows from the optional fields given (a
# client may set bits we do not read), and we never send a consent message.
UNBUILT_FIELDS = {"fields_present", "consent_message"}


def test_one_input(data: bytes) -> None:
    packets = check_parser(data)
    stride = 1 + len(data) % 13
    # As one write, one packet per WebSocket frame (as mstsc sends them), and in small odd pieces.
    run_session(data, [data])
    run_session(data, packets)
    run_session(data, [data[start:start + stride] for start in range(0, len(data), stride)])


def check_parser(data: bytes) -> list[bytes]:
    """Parse packet after packet; return the input cut at packet boundaries."""
    offset = 0
    pieces = []
    while True:
        try:
            packet, consumed = rdg.parse_packet(data, offset)
        except rdg.ProtocolError as error:
            check_protocol_error(error)
            break
        if packet is None:
            assert consumed == 0
            break
        assert rdg.HEADER_LENGTH <= consumed <= min(rdg.MAX_PACKET_LENGTH, len(data) - offset)
        assert consumed == rdg.HEADER.unpack_from(data, offset)[2]
        check_round_trip(packet)
        pieces.append(data[offset:offset + consumed])
        offset += consumed
    return pieces + [data[offset:]] if offset < len(data) else pieces


def check_protocol_error(error: rdg.ProtocolError) -> None:
    assert isinstance(error.code, int) and 0 <= error.code <= 0xFFFFFFFF, error.code
    assert error.packet_type is None or 0 <= error.packet_type <= 0xFFFF
    assert isinstance(error.message, str) and error.message


def check_round_trip(packet: rdg.Packet) -> None:
    built = BUILDERS[type(packet)](packet)
    again, consumed = rdg.parse_packet(built)
    assert consumed == len(built), "a builder made bytes its own parser does not take whole"
    assert fields(again) == fields(packet), (packet, again)


def fields(packet: rdg.Packet | None) -> dict:
    assert packet is not None
    values = {field.name: getattr(packet, field.name) for field in dataclasses.fields(packet)}
    return {name: value for name, value in values.items() if name not in UNBUILT_FIELDS}


def run_session(data: bytes, pieces: list[bytes]) -> None:
    session = RdgServerSession(data_chunk_size=1000)
    closed_events = data_bytes = answers = 0
    for piece in pieces:
        was_closed = session.closed
        received = session.receive_data(piece)
        if was_closed:
            assert received.events == [] and received.packets == [], "a closed session answered"
        sent = list(received.packets)
        for event in received.events:
            assert closed_events == 0, f"{event} after the session ended"
            if isinstance(event, Closed):
                closed_events += 1
                assert session.closed
            elif isinstance(event, TunnelCreateRequested):
                if event.paa_token == "refuse":
                    sent += session.refuse_tunnel()
                else:
                    sent += session.accept_tunnel(7, capabilities=rdg.Capability.IDLE_TIMEOUT,
                                                  redirection_flags=rdg.RedirectionFlags.ENABLE_ALL,
                                                  idle_timeout_minutes=30)
            elif isinstance(event, ChannelCreateRequested):
                assert 1 <= len(event.resources) <= rdg.MAX_RESOURCES
                sent += session.refuse_channel() if event.port == 0 else session.accept_channel(1)
            elif isinstance(event, Data):
                data_bytes += len(event.data)
                if event.data == b"close":
                    sent += session.close_channel(rdg.ReturnCode.S_OK)
                else:
                    sent += session.send_data(event.data) + session.keepalive()
        answers += len(received.packets)
        for packet in sent:
            parsed, consumed = rdg.parse_packet(packet)
            assert consumed == len(packet) and isinstance(parsed, SERVER_PACKETS), packet
    assert data_bytes <= len(data), "the session handed on more DATA bytes than it was fed"
    # One answer per client packet at most (each is at least a header long), and one refusal.
    assert answers <= len(data) // rdg.HEADER_LENGTH + 1
