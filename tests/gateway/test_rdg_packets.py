"""The MS-TSGU packet codec against the byte vectors of PROTOCOLS.md §4.4."""
from __future__ import annotations

import random
import struct

import pytest

from gateway import rdg
from gateway.rdg import PacketType, ProtocolError, ReturnCode
from tests.gateway import vectors as v


def parse_whole(data: bytes) -> rdg.Packet:
    packet, consumed = rdg.parse_packet(data)
    assert packet is not None
    assert consumed == len(data)
    return packet


def refusal(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        rdg.parse_packet(data)
    return caught.value


def header(packet_type: int, length: int) -> bytes:
    return struct.pack("<HHI", packet_type, 0, length)


def packet(packet_type: int, body: bytes) -> bytes:
    return header(packet_type, 8 + len(body)) + body


def utf16z(text: str) -> bytes:
    raw = text.encode("utf-16-le") + b"\x00\x00"
    return struct.pack("<H", len(raw)) + raw


# --- what FreeRDP sends parses to the right fields ----------------------------------------------


def test_it_parses_freerdps_handshake_request_offering_paa():
    assert parse_whole(v.HANDSHAKE_REQUEST) == rdg.HandshakeRequest(
        version_major=1, version_minor=0, client_version=0, extended_auth=rdg.ExtendedAuth.PAA
    )


def test_it_parses_freerdps_tunnel_create_with_the_paa_cookie_without_its_nul():
    parsed = parse_whole(v.TUNNEL_CREATE)
    assert parsed == rdg.TunnelCreate(
        capabilities=0x0D, fields_present=rdg.TUNNEL_CREATE_FIELD_PAA_COOKIE, reauth_tunnel_context=None,
        paa_cookie="TESTTOKEN123",
    )
    assert parsed.capabilities == (rdg.Capability.QUAR_SOH | rdg.Capability.MESSAGING_CONSENT_SIGN
                                   | rdg.Capability.MESSAGING_SERVICE_MSG)


def test_it_parses_freerdps_tunnel_auth_client_name():
    assert parse_whole(v.TUNNEL_AUTH) == rdg.TunnelAuth(fields_present=0, client_name="vm")


def test_it_parses_freerdps_channel_create():
    assert parse_whole(v.CHANNEL_CREATE) == rdg.ChannelCreate(
        resources=("127.0.0.1",), alt_resources=(), port=3390, protocol=3
    )


def test_it_parses_data_keepalive_and_the_close_channel_response():
    assert parse_whole(v.DATA_ABC) == rdg.DataPacket(b"abc")
    assert parse_whole(v.KEEPALIVE) == rdg.Keepalive()
    assert parse_whole(v.CLOSE_CHANNEL_RESPONSE) == rdg.CloseChannelResponse(status_code=0)


def test_it_parses_a_tunnel_create_with_a_reauth_context_before_the_cookie():
    data = rdg.build_tunnel_create("tok", reauth_tunnel_context=0x1122334455667788)
    assert parse_whole(data) == rdg.TunnelCreate(
        capabilities=0x0D, fields_present=3, reauth_tunnel_context=0x1122334455667788, paa_cookie="tok"
    )


def test_it_parses_alternative_resources_in_order():
    data = rdg.build_channel_create(["pool-a", "pool-b"], 3389, alt_resources=["alt-1", "alt-2", "alt-3"])
    assert parse_whole(data) == rdg.ChannelCreate(
        resources=("pool-a", "pool-b"), alt_resources=("alt-1", "alt-2", "alt-3"), port=3389, protocol=3
    )


def test_it_decodes_non_ascii_utf16_names():
    data = rdg.build_tunnel_auth("poste-né-\U0001f600")
    assert parse_whole(data).client_name == "poste-né-\U0001f600"


def test_it_tolerates_optional_trailing_fields_it_does_not_read():
    # A TUNNEL_AUTH with a statement of health after the client name (fieldsPresent 0x1).
    data = packet(PacketType.TUNNEL_AUTH, struct.pack("<H", rdg.TUNNEL_AUTH_FIELD_SOH) + utf16z("vm")
                  + struct.pack("<H", 4) + b"SoH!")
    assert parse_whole(data) == rdg.TunnelAuth(fields_present=1, client_name="vm")


# --- the builders produce the exact bytes -------------------------------------------------------


@pytest.mark.parametrize(("built", "expected"), [
    (rdg.build_handshake_response(extended_auth=rdg.ExtendedAuth.PAA), v.HANDSHAKE_RESPONSE),
    (rdg.build_tunnel_response(), v.TUNNEL_RESPONSE_MINIMAL),
    (rdg.build_tunnel_response(tunnel_id=10, capabilities=rdg.Capability.IDLE_TIMEOUT), v.TUNNEL_RESPONSE_RDPGW),
    (rdg.build_tunnel_response(ReturnCode.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED),
     v.TUNNEL_RESPONSE_ACCESS_DENIED),
    (rdg.build_tunnel_auth_response(), v.TUNNEL_AUTH_RESPONSE_MINIMAL),
    (rdg.build_tunnel_auth_response(redirection_flags=rdg.RedirectionFlags.ENABLE_ALL, idle_timeout_minutes=0),
     v.TUNNEL_AUTH_RESPONSE_ENABLE_ALL),
    (rdg.build_channel_response(), v.CHANNEL_RESPONSE_MINIMAL),
    (rdg.build_channel_response(channel_id=1), v.CHANNEL_RESPONSE_ID_1),
    (rdg.build_data(b"abc"), v.DATA_ABC),
    (rdg.build_keepalive(), v.KEEPALIVE),
    (rdg.build_service_message("Hi"), v.SERVICE_MESSAGE_HI),
    (rdg.build_close_channel(), v.CLOSE_CHANNEL),
    (rdg.build_close_channel_response(), v.CLOSE_CHANNEL_RESPONSE),
], ids=lambda value: value.hex(" ")[:17] if isinstance(value, bytes) else None)
def test_server_builders_produce_the_published_bytes(built, expected):
    assert built == expected


def test_client_builders_reproduce_what_freerdp_sends():
    assert rdg.build_handshake_request() == v.HANDSHAKE_REQUEST
    assert rdg.build_tunnel_create("TESTTOKEN123") == v.TUNNEL_CREATE
    assert rdg.build_tunnel_auth("vm") == v.TUNNEL_AUTH
    assert rdg.build_channel_create(["127.0.0.1"], 3390) == v.CHANNEL_CREATE


def test_server_packets_read_back_to_what_was_built():
    assert parse_whole(v.HANDSHAKE_RESPONSE) == rdg.HandshakeResponse(0, 1, 0, 0, rdg.ExtendedAuth.PAA)
    assert parse_whole(v.TUNNEL_RESPONSE_RDPGW) == rdg.TunnelResponse(
        server_version=0, status_code=0, fields_present=3, tunnel_id=10, capabilities=2, consent_message=None
    )
    assert parse_whole(v.TUNNEL_AUTH_RESPONSE_ENABLE_ALL) == rdg.TunnelAuthResponse(
        error_code=0, fields_present=3, redirection_flags=0x80000000, idle_timeout_minutes=0
    )
    assert parse_whole(v.CHANNEL_RESPONSE_ID_1) == rdg.ChannelResponse(error_code=0, fields_present=1, channel_id=1)
    assert parse_whole(v.SERVICE_MESSAGE_HI) == rdg.ServiceMessage("Hi")
    assert parse_whole(v.CLOSE_CHANNEL) == rdg.CloseChannel(0)


def test_a_tunnel_response_never_carries_the_soh_nonce_field():
    built = rdg.build_tunnel_response(tunnel_id=1, capabilities=0xFF)
    assert not parse_whole(built).fields_present & rdg.TUNNEL_RESPONSE_FIELD_SOH_REQ


def test_the_largest_data_packet_is_built_and_parsed():
    payload = bytes(range(256)) * 255 + bytes(range(255))  # 65535 bytes
    built = rdg.build_data(payload)
    assert len(built) == 65545
    assert parse_whole(built) == rdg.DataPacket(payload)


def test_builders_refuse_what_cannot_be_encoded():
    with pytest.raises(ValueError):
        rdg.build_data(b"x" * 65536)
    with pytest.raises(ValueError):
        rdg.build_service_message("nul\x00inside")
    with pytest.raises(ValueError):
        rdg.build_service_message("x" * 32767)  # 65534 bytes + NUL does not fit a u16
    with pytest.raises(ValueError):
        rdg.build_channel_create([], 3389)


# --- partial input ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", [v.HANDSHAKE_REQUEST, v.TUNNEL_CREATE, v.CHANNEL_CREATE, v.DATA_ABC])
def test_every_prefix_of_a_packet_is_incomplete_not_an_error(vector):
    for cut in range(len(vector)):
        assert rdg.parse_packet(vector[:cut]) == (None, 0)


def test_it_parses_back_to_back_packets_by_offset():
    stream = v.HANDSHAKE_REQUEST + v.TUNNEL_CREATE + v.KEEPALIVE[:5]
    first, used = rdg.parse_packet(stream)
    second, used_second = rdg.parse_packet(stream, used)
    assert isinstance(first, rdg.HandshakeRequest)
    assert isinstance(second, rdg.TunnelCreate)
    assert rdg.parse_packet(stream, used + used_second) == (None, 0)


def test_it_parses_from_a_memoryview():
    packet_, used = rdg.parse_packet(memoryview(b"junk" + v.DATA_ABC), 4)
    assert packet_ == rdg.DataPacket(b"abc") and used == len(v.DATA_ABC)


# --- refusals -----------------------------------------------------------------------------------


def test_it_refuses_a_packet_length_shorter_than_the_header():
    error = refusal(header(PacketType.KEEPALIVE, 7))
    assert error.code == ReturnCode.E_PROXY_INTERNALERROR
    assert error.packet_type == PacketType.KEEPALIVE


def test_it_refuses_an_oversized_packet_from_its_header_alone():
    error = refusal(header(PacketType.DATA, rdg.MAX_PACKET_LENGTH + 1))
    assert "exceeds" in error.message
    assert error.packet_type == PacketType.DATA


def test_it_accepts_a_packet_length_up_to_the_maximum():
    assert rdg.parse_packet(header(PacketType.TUNNEL_AUTH, rdg.MAX_PACKET_LENGTH)) == (None, 0)


@pytest.mark.parametrize("packet_type", [0x0, 0x3, 0xC, 0xE, 0x12, 0xFFFF])
def test_it_refuses_unknown_and_unsupported_packet_types(packet_type):
    error = refusal(header(packet_type, 8))
    assert error.code == ReturnCode.E_PROXY_INTERNALERROR
    assert "unsupported packet type" in error.message


@pytest.mark.parametrize(("data", "what"), [
    (packet(PacketType.HANDSHAKE_REQUEST, b"\x01\x00"), "clientVersion"),
    (packet(PacketType.TUNNEL_CREATE, b"\x0d\x00\x00\x00\x01\x00"), "reserved"),
    (packet(PacketType.CHANNEL_CREATE, b"\x01\x00\x3e\x0d"), "protocol"),
    (packet(PacketType.DATA, b"\x03"), "cbDataLen"),
    (packet(PacketType.CLOSE_CHANNEL_RESPONSE, b"\x00\x00"), "statusCode"),
])
def test_it_refuses_a_body_too_short_for_its_type(data, what):
    error = refusal(data)
    assert error.code == ReturnCode.E_PROXY_INTERNALERROR
    assert what in error.message


def test_it_refuses_data_whose_length_disagrees_with_the_header():
    assert "disagrees" in refusal(packet(PacketType.DATA, b"\x02\x00abc")).message
    assert "cbDataLen 5 disagrees with packetLength 13" in refusal(packet(PacketType.DATA, b"\x05\x00abc")).message


@pytest.mark.parametrize(("cookie_field", "problem"), [
    (b"\x03\x00abc", "cannot hold"),  # odd byte count
    (b"\x00\x00", "cannot hold"),  # empty: not even the NUL
    (b"\x40\x00" + "ab".encode("utf-16-le") + b"\x00\x00", "runs past the end"),
    (b"\x04\x00" + "ab".encode("utf-16-le"), "not NUL-terminated"),
    (b"\x06\x00\x00\xd8a\x00\x00\x00", "not valid UTF-16LE"),  # a lone high surrogate
    (b"\x08\x00a\x00\x00\x00b\x00\x00\x00", "embedded NUL"),
    (b"\x1a", "length of PAA cookie"),
])
def test_a_malformed_paa_cookie_is_refused_as_a_bad_cookie_packet(cookie_field, problem):
    error = refusal(packet(PacketType.TUNNEL_CREATE, struct.pack("<IHH", 0x0D, 1, 0) + cookie_field))
    assert error.code == ReturnCode.E_PROXY_COOKIE_BADPACKET
    assert error.packet_type == PacketType.TUNNEL_CREATE
    assert problem in error.message


def test_a_malformed_resource_name_is_refused_as_an_internal_error():
    body = struct.pack("<BBHH", 1, 0, 3389, 3) + b"\x04\x00" + "ab".encode("utf-16-le")
    error = refusal(packet(PacketType.CHANNEL_CREATE, body))
    assert error.code == ReturnCode.E_PROXY_INTERNALERROR
    assert "resource name 1 is not NUL-terminated" in error.message


@pytest.mark.parametrize(("count", "alt_count", "problem"), [
    (0, 0, "numResources 0"), (51, 0, "numResources 51"), (1, 4, "numAltResources 4"),
])
def test_it_refuses_resource_counts_outside_the_spec(count, alt_count, problem):
    body = struct.pack("<BBHH", count, alt_count, 3389, 3) + utf16z("host") * (count + alt_count)
    error = refusal(packet(PacketType.CHANNEL_CREATE, body))
    assert problem in error.message
    assert error.packet_type == PacketType.CHANNEL_CREATE


def test_it_accepts_the_maximum_resource_counts():
    body = struct.pack("<BBHH", 50, 3, 3389, 3) + utf16z("h") * 53
    parsed = parse_whole(packet(PacketType.CHANNEL_CREATE, body))
    assert len(parsed.resources) == 50 and len(parsed.alt_resources) == 3


def test_garbage_only_ever_raises_protocol_error():
    """Mutated vectors and random bytes: parse_packet returns or raises ProtocolError, nothing else."""
    rng = random.Random(20240605)
    seeds = [v.HANDSHAKE_REQUEST, v.TUNNEL_CREATE, v.TUNNEL_AUTH, v.CHANNEL_CREATE, v.DATA_ABC,
             v.SERVICE_MESSAGE_HI, v.TUNNEL_RESPONSE_RDPGW, v.TUNNEL_AUTH_RESPONSE_ENABLE_ALL]
    outcomes = {"parsed": 0, "incomplete": 0, "refused": 0}
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = bytearray(rng.randbytes(rng.randint(0, 40)))
        try:
            parsed, used = rdg.parse_packet(bytes(data))
        except ProtocolError:
            outcomes["refused"] += 1
        else:
            outcomes["parsed" if parsed is not None else "incomplete"] += 1
            assert used <= len(data)
    assert all(outcomes.values()), outcomes


# --- return codes -------------------------------------------------------------------------------


def test_return_codes_have_the_published_values():
    assert ReturnCode.E_PROXY_INTERNALERROR == 0x800759D8
    assert ReturnCode.E_PROXY_RAP_ACCESSDENIED == 0x800759DA
    assert ReturnCode.E_PROXY_COOKIE_BADPACKET == 0x800759F7
    assert ReturnCode.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED == 0x800759F8
    assert ReturnCode.E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD == 0x800759F9
    assert ReturnCode.E_PROXY_CAPABILITYMISMATCH == 0x800759E9
    assert ReturnCode.ERROR_GRACEFUL_DISCONNECT == 0x4CA


def test_refusal_codes_are_failures_a_client_recognises():
    # FreeRDP checks FAILED(): the target-unreachable refusal must be the HRESULT form, not 0x59DD.
    assert ReturnCode.E_PROXY_TS_CONNECTFAILED == 0x800759DD
    assert rdg.is_failure(ReturnCode.E_PROXY_TS_CONNECTFAILED)
    assert not rdg.is_failure(0x59DD)
    assert not rdg.is_failure(ReturnCode.S_OK)


def test_codes_are_described_by_name_when_known():
    assert rdg.describe_code(0x800759F8) == "E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED (0x800759F8)"
    assert rdg.describe_code(0x12345) == "0x00012345"
