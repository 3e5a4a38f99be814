"""The server state machine fed with the bytes FreeRDP 2.11 sends (PROTOCOLS.md §4.4, §4.5)."""
from __future__ import annotations

import pytest

from gateway import rdg
from gateway.rdg import PacketType, ReturnCode
from gateway.rdg_session import (
    ChannelCreateRequested,
    Closed,
    Data,
    HandshakeDone,
    RdgServerSession,
    SessionState,
    SessionStateError,
    TunnelAuthRequested,
    TunnelCreateRequested,
)
from tests.gateway import vectors as v


def status_of(response: bytes) -> int:
    """The errorCode/statusCode field of a HANDSHAKE/TUNNEL/TUNNEL_AUTH/CHANNEL/CLOSE response."""
    parsed, _ = rdg.parse_packet(response)
    if isinstance(parsed, (rdg.TunnelResponse, rdg.CloseChannelResponse)):
        return parsed.status_code
    return parsed.error_code


def session_at(state: SessionState, **options) -> RdgServerSession:
    """A session driven with FreeRDP's packets (and our accepting answers) up to ``state``."""
    session = RdgServerSession(**options)
    steps = [
        (SessionState.AWAIT_TUNNEL_CREATE, lambda: session.receive_data(v.HANDSHAKE_REQUEST)),
        (SessionState.TUNNEL_PENDING, lambda: session.receive_data(v.TUNNEL_CREATE)),
        (SessionState.AWAIT_TUNNEL_AUTH, lambda: session.accept_tunnel(10)),
        (SessionState.AWAIT_CHANNEL_CREATE, lambda: session.receive_data(v.TUNNEL_AUTH)),
        (SessionState.CHANNEL_PENDING, lambda: session.receive_data(v.CHANNEL_CREATE)),
        (SessionState.OPENED, lambda: session.accept_channel(1)),
    ]
    for reached, step in steps:
        if session.state is state:
            break
        step()
        assert session.state is reached
    assert session.state is state
    return session


def run_setup(feeds: list[bytes]) -> tuple[list, list[bytes]]:
    """Feed the client's setup bytes in the given split, answering like the transport would."""
    session = RdgServerSession()
    events: list = []
    sent: list[bytes] = []
    for feed in feeds:
        received = session.receive_data(feed)
        sent += received.packets
        for event in received.events:
            events.append(event)
            if isinstance(event, TunnelCreateRequested):
                sent += session.accept_tunnel(10, capabilities=rdg.Capability.IDLE_TIMEOUT)
            elif isinstance(event, ChannelCreateRequested):
                sent += session.accept_channel(1)
    return events, sent


# --- the happy path -----------------------------------------------------------------------------


def test_the_full_freerdp_exchange_produces_the_published_replies():
    session = RdgServerSession()

    received = session.receive_data(v.HANDSHAKE_REQUEST)
    assert received.events == [HandshakeDone(rdg.ExtendedAuth.PAA)]
    assert received.packets == [v.HANDSHAKE_RESPONSE]

    received = session.receive_data(v.TUNNEL_CREATE)
    assert received.events == [TunnelCreateRequested(paa_token="TESTTOKEN123", capabilities=0x0D)]
    assert received.packets == []  # the transport decides on the token
    assert session.accept_tunnel(10, capabilities=rdg.Capability.IDLE_TIMEOUT) == [v.TUNNEL_RESPONSE_RDPGW]

    received = session.receive_data(v.TUNNEL_AUTH)
    assert received.events == [TunnelAuthRequested(client_name="vm")]
    assert received.packets == [v.TUNNEL_AUTH_RESPONSE_MINIMAL]

    received = session.receive_data(v.CHANNEL_CREATE)
    assert received.events == [ChannelCreateRequested(resources=("127.0.0.1",), alt_resources=(), port=3390)]
    assert received.packets == []
    assert session.accept_channel(1) == [v.CHANNEL_RESPONSE_ID_1]
    assert session.state is SessionState.OPENED

    assert session.receive_data(v.DATA_ABC) == ([Data(b"abc")], [])
    assert session.send_data(b"abc") == [v.DATA_ABC]
    assert session.service_message("Hi") == [v.SERVICE_MESSAGE_HI]

    assert session.close_channel() == [v.CLOSE_CHANNEL]
    assert session.state is SessionState.CLOSING
    received = session.receive_data(v.CLOSE_CHANNEL_RESPONSE)
    assert received.events == [Closed(code=ReturnCode.S_OK, reason="channel closed by the gateway")]
    assert session.closed


def test_minimal_answers_omit_every_optional_field():
    session = session_at(SessionState.TUNNEL_PENDING)
    assert session.accept_tunnel(None) == [v.TUNNEL_RESPONSE_MINIMAL]
    session.receive_data(v.TUNNEL_AUTH)
    session.receive_data(v.CHANNEL_CREATE)
    assert session.accept_channel(None) == [v.CHANNEL_RESPONSE_MINIMAL]


def test_redirection_flags_and_idle_timeout_given_at_accept_go_into_the_tunnel_auth_response():
    session = session_at(SessionState.TUNNEL_PENDING)
    session.accept_tunnel(10, redirection_flags=rdg.RedirectionFlags.ENABLE_ALL, idle_timeout_minutes=0)
    assert session.receive_data(v.TUNNEL_AUTH).packets == [v.TUNNEL_AUTH_RESPONSE_ENABLE_ALL]


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_the_setup_gives_the_same_result_however_the_bytes_are_split():
    # FreeRDP waits for each answer before its next request, so a feed never holds two setup packets;
    # each may arrive in pieces, and the DATA that follows may come several to a feed.
    data = v.DATA_ABC + v.DATA_ABC
    whole = run_setup([*v.CLIENT_SETUP, data])
    assert whole == run_setup([piece for packet in (*v.CLIENT_SETUP, data) for piece in pieces(packet, 1)])
    assert whole == run_setup([piece for packet in (*v.CLIENT_SETUP, data) for piece in pieces(packet, 7)])
    assert whole == run_setup([*v.CLIENT_SETUP, data[:3], data[3:19], data[19:]])
    events, sent = whole
    assert [type(event) for event in events] == [
        HandshakeDone, TunnelCreateRequested, TunnelAuthRequested, ChannelCreateRequested, Data, Data,
    ]
    assert sent == [v.HANDSHAKE_RESPONSE, v.TUNNEL_RESPONSE_RDPGW, v.TUNNEL_AUTH_RESPONSE_MINIMAL,
                    v.CHANNEL_RESPONSE_ID_1]


def test_packets_after_a_pending_decision_wait_for_it():
    # Several DATA packets in one feed, one of them split across the next feed.
    session = session_at(SessionState.OPENED)
    big = rdg.build_data(b"x" * 3000)
    first = v.DATA_ABC + rdg.build_data(b"defg") + big[:1000]
    assert session.receive_data(first).events == [Data(b"abc"), Data(b"defg")]
    assert session.receive_data(big[1000:2999]).events == []
    assert session.receive_data(big[2999:] + v.DATA_ABC).events == [Data(b"x" * 3000), Data(b"abc")]


def test_it_accepts_memoryview_and_bytearray_feeds():
    session = session_at(SessionState.OPENED)
    assert session.receive_data(memoryview(v.DATA_ABC)[:4]).events == []
    assert session.receive_data(bytearray(v.DATA_ABC[4:])).events == [Data(b"abc")]


# --- sending data -------------------------------------------------------------------------------


def test_send_data_splits_into_packets_of_16000_bytes_by_default():
    session = session_at(SessionState.OPENED)
    payload = bytes(range(256)) * 160  # 40960 bytes
    packets = session.send_data(payload)
    parsed = [rdg.parse_packet(p)[0].data for p in packets]
    assert [len(chunk) for chunk in parsed] == [16000, 16000, 8960]
    assert b"".join(parsed) == payload


def test_send_data_honours_a_chunk_size_up_to_65535():
    session = session_at(SessionState.OPENED, data_chunk_size=65535)
    packets = session.send_data(b"y" * 70000)
    assert [len(p) for p in packets] == [65545, 4475]
    assert session.send_data(b"") == []


@pytest.mark.parametrize("size", [0, 65536])
def test_it_refuses_a_data_chunk_size_a_packet_cannot_carry(size):
    with pytest.raises(ValueError):
        RdgServerSession(data_chunk_size=size)


# --- refusals with their codes ------------------------------------------------------------------


@pytest.mark.parametrize("extended_auth", [rdg.ExtendedAuth.NONE, rdg.ExtendedAuth.SC, rdg.ExtendedAuth.SSPI_NTLM,
                                           rdg.ExtendedAuth.BEARER])
def test_a_client_without_paa_is_refused_at_the_handshake(extended_auth):
    session = RdgServerSession()
    received = session.receive_data(rdg.build_handshake_request(extended_auth))
    assert received.packets == [rdg.build_handshake_response(ReturnCode.E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD)]
    [closed] = received.events
    assert closed.code == ReturnCode.E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD
    assert "only accepts PAA" in closed.reason
    assert session.closed


def test_a_client_offering_paa_among_others_is_answered_with_paa_only():
    session = RdgServerSession()
    received = session.receive_data(rdg.build_handshake_request(rdg.ExtendedAuth.PAA | rdg.ExtendedAuth.SSPI_NTLM))
    assert received.packets == [v.HANDSHAKE_RESPONSE]


def test_a_refused_token_answers_access_denied_and_closes():
    session = session_at(SessionState.TUNNEL_PENDING)
    assert session.refuse_tunnel() == [v.TUNNEL_RESPONSE_ACCESS_DENIED]
    assert session.closed
    assert session.receive_data(v.TUNNEL_AUTH) == ([], [])


@pytest.mark.parametrize("tunnel_create", [
    rdg.build_tunnel_create(None),
    rdg.build_tunnel_create(""),
])
def test_a_tunnel_create_without_a_cookie_is_a_bad_cookie_packet(tunnel_create):
    session = session_at(SessionState.AWAIT_TUNNEL_CREATE)
    received = session.receive_data(tunnel_create)
    assert received.packets == [rdg.build_tunnel_response(ReturnCode.E_PROXY_COOKIE_BADPACKET)]
    assert received.events[0].code == ReturnCode.E_PROXY_COOKIE_BADPACKET
    assert session.closed


def test_a_malformed_cookie_is_answered_with_a_tunnel_response_carrying_the_parse_error():
    session = session_at(SessionState.AWAIT_TUNNEL_CREATE)
    odd_length = v.TUNNEL_CREATE[:16] + b"\x19\x00" + v.TUNNEL_CREATE[18:]
    received = session.receive_data(odd_length)
    assert received.packets == [rdg.build_tunnel_response(ReturnCode.E_PROXY_COOKIE_BADPACKET)]
    assert "cannot hold" in received.events[0].reason


def test_a_refused_channel_defaults_to_connect_failed():
    session = session_at(SessionState.CHANNEL_PENDING)
    [response] = session.refuse_channel()
    assert status_of(response) == 0x800759DD
    assert session.closed


def test_a_channel_can_be_refused_by_policy():
    session = session_at(SessionState.CHANNEL_PENDING)
    assert session.refuse_channel(ReturnCode.E_PROXY_RAP_ACCESSDENIED) == [
        rdg.build_channel_response(ReturnCode.E_PROXY_RAP_ACCESSDENIED)
    ]


@pytest.mark.parametrize("code", [0, 0x59DD, ReturnCode.ERROR_ACCESS_DENIED])
def test_refusing_with_a_code_clients_read_as_success_is_a_caller_bug(code):
    with pytest.raises(ValueError, match="not a failure"):
        session_at(SessionState.CHANNEL_PENDING).refuse_channel(code)
    with pytest.raises(ValueError, match="not a failure"):
        session_at(SessionState.TUNNEL_PENDING).refuse_tunnel(code)


def test_a_channel_for_another_protocol_than_rdp_is_refused_by_policy():
    session = session_at(SessionState.AWAIT_CHANNEL_CREATE)
    received = session.receive_data(rdg.build_channel_create(["host"], 22, protocol=4))
    assert received.packets == [rdg.build_channel_response(ReturnCode.E_PROXY_RAP_ACCESSDENIED)]
    assert session.closed


@pytest.mark.parametrize(("state", "packet", "response_type"), [
    (SessionState.AWAIT_HANDSHAKE, v.TUNNEL_CREATE, PacketType.TUNNEL_RESPONSE),
    (SessionState.AWAIT_TUNNEL_CREATE, v.HANDSHAKE_REQUEST, PacketType.HANDSHAKE_RESPONSE),
    (SessionState.TUNNEL_PENDING, v.TUNNEL_AUTH, PacketType.TUNNEL_AUTH_RESPONSE),
    (SessionState.TUNNEL_PENDING, v.TUNNEL_CREATE, PacketType.TUNNEL_RESPONSE),
    (SessionState.AWAIT_TUNNEL_AUTH, v.CHANNEL_CREATE, PacketType.CHANNEL_RESPONSE),
    (SessionState.AWAIT_CHANNEL_CREATE, v.TUNNEL_AUTH, PacketType.TUNNEL_AUTH_RESPONSE),
    (SessionState.OPENED, v.HANDSHAKE_REQUEST, PacketType.HANDSHAKE_RESPONSE),
    (SessionState.AWAIT_CHANNEL_CREATE, rdg.build_close_channel(), PacketType.CLOSE_CHANNEL_RESPONSE),
])
def test_a_packet_in_the_wrong_state_gets_its_response_with_internal_error_and_closes(state, packet, response_type):
    session = session_at(state)
    received = session.receive_data(packet)
    [response] = received.packets
    assert response[0] == response_type
    assert status_of(response) == ReturnCode.E_PROXY_INTERNALERROR
    assert received.events == [Closed(ReturnCode.E_PROXY_INTERNALERROR, received.events[0].reason)]
    assert "unexpected" in received.events[0].reason
    assert session.closed


@pytest.mark.parametrize(("state", "packet"), [
    (SessionState.AWAIT_HANDSHAKE, v.DATA_ABC),
    (SessionState.CHANNEL_PENDING, v.DATA_ABC),
    (SessionState.OPENED, v.CLOSE_CHANNEL_RESPONSE),  # we never asked to close
    (SessionState.OPENED, v.SERVICE_MESSAGE_HI),  # a server-only packet
    (SessionState.OPENED, v.TUNNEL_RESPONSE_MINIMAL),
])
def test_a_packet_without_a_response_type_in_the_wrong_state_just_closes(state, packet):
    session = session_at(state)
    received = session.receive_data(packet)
    assert received.packets == []
    assert [type(event) for event in received.events] == [Closed]
    assert received.events[0].code == ReturnCode.E_PROXY_INTERNALERROR


@pytest.mark.parametrize("state", [SessionState.CHANNEL_PENDING, SessionState.OPENED])
def test_a_second_channel_create_is_refused_one_tunnel_carries_one_channel(state):
    session = session_at(state)
    received = session.receive_data(v.CHANNEL_CREATE)
    assert received.packets == [rdg.build_channel_response(ReturnCode.E_PROXY_INTERNALERROR)]
    assert "one channel" in received.events[0].reason
    assert session.closed


def test_a_client_that_does_not_wait_for_the_token_decision_is_refused():
    session = session_at(SessionState.AWAIT_TUNNEL_CREATE)
    received = session.receive_data(v.TUNNEL_CREATE + v.TUNNEL_AUTH)
    assert [type(event) for event in received.events] == [TunnelCreateRequested, Closed]
    assert received.packets == [rdg.build_tunnel_auth_response(ReturnCode.E_PROXY_INTERNALERROR)]
    assert session.accept_tunnel(10) == []  # the transport's late decision sends nothing


def test_events_before_a_bad_packet_in_the_same_feed_are_kept():
    session = session_at(SessionState.OPENED)
    received = session.receive_data(v.DATA_ABC + v.HANDSHAKE_REQUEST + v.DATA_ABC)
    assert [type(event) for event in received.events] == [Data, Closed]
    assert received.packets == [rdg.build_handshake_response(ReturnCode.E_PROXY_INTERNALERROR)]


def test_bytes_after_the_session_closed_are_ignored():
    session = session_at(SessionState.TUNNEL_PENDING)
    session.refuse_tunnel()
    assert session.receive_data(b"\xff" * 100) == ([], [])


# --- garbage and oversize input -----------------------------------------------------------------


def test_an_oversized_packet_is_refused_from_its_header_without_buffering_the_body():
    session = session_at(SessionState.OPENED)
    huge_header = rdg.HEADER.pack(PacketType.DATA, 0, 10_000_000)
    received = session.receive_data(huge_header)
    assert received.events[0].code == ReturnCode.E_PROXY_INTERNALERROR
    assert "exceeds" in received.events[0].reason
    assert session.receive_data(b"\x00" * 100_000) == ([], [])


def test_garbage_instead_of_a_handshake_closes_the_session():
    session = RdgServerSession()
    received = session.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(event) for event in received.events] == [Closed]
    assert "unsupported packet type" in received.events[0].reason
    assert session.closed


def test_a_partial_packet_waits_for_more_bytes():
    session = RdgServerSession()
    assert session.receive_data(v.HANDSHAKE_REQUEST[:7]) == ([], [])
    assert session.state is SessionState.AWAIT_HANDSHAKE
    assert session.receive_data(b"") == ([], [])


# --- keepalives ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [SessionState.AWAIT_TUNNEL_CREATE, SessionState.TUNNEL_PENDING,
                                   SessionState.CHANNEL_PENDING])
def test_a_client_keepalive_during_setup_is_ignored(state):
    session = session_at(state)
    assert session.receive_data(v.KEEPALIVE) == ([], [])
    assert session.state is state


def test_an_unsolicited_client_keepalive_is_answered_once_open():
    session = session_at(SessionState.OPENED)
    assert session.receive_data(v.KEEPALIVE).packets == [v.KEEPALIVE]


def test_freerdps_echo_of_our_keepalive_is_not_answered_so_nothing_bounces():
    session = session_at(SessionState.OPENED)
    assert session.keepalive() == [v.KEEPALIVE]
    assert session.keepalive() == [v.KEEPALIVE]
    # FreeRDP answers each of them; neither answer is answered back.
    assert session.receive_data(v.KEEPALIVE + v.KEEPALIVE) == ([], [])
    # A client that also answers our answer never starts a loop either.
    assert session.receive_data(v.KEEPALIVE).packets == [v.KEEPALIVE]
    assert session.receive_data(v.KEEPALIVE).packets == []


def test_no_keepalive_is_sent_before_the_channel_is_open():
    # FreeRDP 3 fails the connection on a KEEPALIVE during setup.
    for state in (SessionState.AWAIT_HANDSHAKE, SessionState.TUNNEL_PENDING, SessionState.CHANNEL_PENDING):
        assert session_at(state).keepalive() == []


# --- closing ------------------------------------------------------------------------------------


def test_a_client_close_channel_is_answered_and_ends_the_session():
    session = session_at(SessionState.OPENED)
    received = session.receive_data(rdg.build_close_channel(ReturnCode.ERROR_GRACEFUL_DISCONNECT))
    assert received.packets == [v.CLOSE_CHANNEL_RESPONSE]
    assert received.events == [Closed(ReturnCode.ERROR_GRACEFUL_DISCONNECT, "client closed the channel")]


def test_data_in_flight_after_we_close_the_channel_is_dropped():
    session = session_at(SessionState.OPENED)
    session.close_channel(ReturnCode.ERROR_BAD_ARGUMENTS)
    assert session.receive_data(v.DATA_ABC + v.KEEPALIVE) == ([], [])
    received = session.receive_data(v.CLOSE_CHANNEL_RESPONSE)
    assert received.events == [Closed(ReturnCode.ERROR_BAD_ARGUMENTS, "channel closed by the gateway")]


def test_nothing_more_is_sent_once_closing_or_closed():
    session = session_at(SessionState.OPENED)
    session.close_channel()
    assert session.send_data(b"late") == []
    assert session.keepalive() == []
    assert session.service_message("late") == []
    assert session.close_channel() == []
    session.receive_data(v.CLOSE_CHANNEL_RESPONSE)
    assert session.accept_channel(1) == []  # e.g. orchestration finishing after the client left


# --- caller bugs --------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "call"), [
    (SessionState.AWAIT_HANDSHAKE, lambda s: s.accept_tunnel(1)),
    (SessionState.AWAIT_TUNNEL_AUTH, lambda s: s.accept_channel(1)),
    (SessionState.CHANNEL_PENDING, lambda s: s.send_data(b"early")),
    (SessionState.CHANNEL_PENDING, lambda s: s.service_message("Starting your desktop")),
    (SessionState.TUNNEL_PENDING, lambda s: s.close_channel()),
])
def test_calls_the_protocol_does_not_allow_now_raise(state, call):
    with pytest.raises(SessionStateError):
        call(session_at(state))
