"""The recording gateway speaks enough MS-TSGU for FreeRDP 2 to hand over its PAA token."""
from __future__ import annotations

import secrets
import struct

import pytest

from tests.e2e.recording_gateway import (
    HANDSHAKE_RESPONSE,
    RecordingGateway,
    decode_client_frame,
    encode_server_frame,
    parse_request_head,
    parse_tunnel_create,
    record_rdp_file,
    split_packet,
    websocket_accept,
)

# PROTOCOLS.md §4.4: TUNNEL_CREATE for token "TESTTOKEN123" as FreeRDP 2.11.7 sent it.
TUNNEL_CREATE_VECTOR = (
    bytes.fromhex("040000002c0000000d00000001000000" "1a00") + "TESTTOKEN123\0".encode("utf-16-le")
)
HANDSHAKE_REQUEST_VECTOR = bytes.fromhex("01 00 00 00 0e 00 00 00 01 00 00 00 02 00")


def write_rdp_file(path, lines: list[str]) -> None:
    """An .rdp file the way rdpsign.exe writes them: UTF-16LE with a BOM, CRLF line ends."""
    path.write_bytes(b"\xff\xfe" + "\r\n".join(lines).encode("utf-16-le") + "\r\n".encode("utf-16-le"))


def test_websocket_accept_matches_rfc_6455_and_freerdp_2s_short_key():
    assert websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
    assert websocket_accept("NF_L^XYECXCQPRX") == "wlpUOmmRxLOSiLKr+1lbZ9U4fNg="  # PROTOCOLS.md §4.2


def test_it_unmasks_the_rfc_6455_masked_hello_frame():
    frame = bytes.fromhex("818537fa213d7f9f4d5158")  # RFC 6455 §5.7

    assert decode_client_frame(frame) == (0x1, b"Hello", len(frame))
    assert decode_client_frame(frame[:-1]) is None  # incomplete: wait for more


def test_it_rejects_an_unmasked_client_frame():
    with pytest.raises(ValueError, match="not masked"):
        decode_client_frame(bytes.fromhex("810548656c6c6f"))


def test_server_frames_are_unmasked_binary():
    assert encode_server_frame(HANDSHAKE_RESPONSE) == b"\x82\x12" + HANDSHAKE_RESPONSE
    assert encode_server_frame(b"x" * 300)[:4] == b"\x82\x7e\x01\x2c"


def test_it_reads_the_paa_token_from_freerdps_tunnel_create():
    tunnel = parse_tunnel_create(TUNNEL_CREATE_VECTOR)

    assert (tunnel.caps_flags, tunnel.fields_present, tunnel.paa_token) == (0x0D, 0x1, "TESTTOKEN123")


def test_it_refuses_a_truncated_paa_cookie():
    truncated = TUNNEL_CREATE_VECTOR[:-4]
    truncated = truncated[:4] + struct.pack("<I", len(truncated)) + truncated[8:]

    with pytest.raises(ValueError, match="truncated"):
        parse_tunnel_create(truncated)


def test_split_packet_takes_whole_packets_off_a_stream():
    stream = HANDSHAKE_REQUEST_VECTOR + TUNNEL_CREATE_VECTOR[:10]

    packet_type, packet, rest = split_packet(stream)

    assert (packet_type, packet, rest) == (0x1, HANDSHAKE_REQUEST_VECTOR, TUNNEL_CREATE_VECTOR[:10])
    assert split_packet(rest) is None


def test_it_parses_freerdps_request_head():
    head = b"RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1\r\nHost: 127.0.0.1\r\nRDG-Auth-Scheme: PAA"

    assert parse_request_head(head) == ("RDG_OUT_DATA", "/remoteDesktopGateway/",
                                        {"host": "127.0.0.1", "rdg-auth-scheme": "PAA"})


@pytest.mark.e2e
def test_xfreerdp_presents_the_files_access_token_to_the_gateway_it_names(xvfb, tmp_path):
    token = "e2e-" + secrets.token_urlsafe(24)
    rdp_file = tmp_path / "pool-a.rdp"
    with RecordingGateway() as gateway:
        write_rdp_file(rdp_file, [
            "full address:s:pool-a",
            f"gatewayhostname:s:{gateway.address}",
            "gatewayusagemethod:i:1",
            "gatewayprofileusagemethod:i:1",
            "gatewaycredentialssource:i:5",
            f"gatewayaccesstoken:s:{token}",
        ])

        recording = record_rdp_file(rdp_file, recorder=gateway)

    assert recording.error is None, recording.client_output
    assert recording.method == "RDG_OUT_DATA"
    assert recording.path == "/remoteDesktopGateway/"
    assert recording.headers["rdg-auth-scheme"] == "PAA"
    assert recording.handshake_request == HANDSHAKE_REQUEST_VECTOR
    assert recording.paa_token == token


@pytest.mark.e2e
def test_record_rdp_file_redirects_a_served_files_gateway_to_its_own_recorder(xvfb, tmp_path):
    token = "e2e-" + secrets.token_urlsafe(24)
    rdp_file = tmp_path / "served.rdp"
    # UTF-8 without BOM is the other encoding FreeRDP reads; the named gateway does not exist.
    rdp_file.write_text(
        "full address:s:pool-a\r\ngatewayhostname:s:gateway.invalid:443\r\ngatewayusagemethod:i:1\r\n"
        f"gatewayaccesstoken:s:{token}\r\n"
    )

    recording = record_rdp_file(rdp_file)

    assert recording.error is None, recording.client_output
    assert recording.headers["rdg-auth-scheme"] == "PAA"
    assert recording.paa_token == token


def test_record_rdp_file_wants_a_name_xfreerdp_reads_as_a_file(tmp_path):
    with pytest.raises(ValueError, match=r"\.rdp"):
        record_rdp_file(tmp_path / "feed.txt")
