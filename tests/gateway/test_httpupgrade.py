"""The hand-made HTTP layer: FreeRDP 2.11's request head, the upgrade answer, legacy responses, chunks."""
from __future__ import annotations

import pytest

from gateway import rdg
from gateway.httpupgrade import (
    MAX_HEAD_SIZE,
    SEED_LENGTH,
    ChunkedDecoder,
    HttpError,
    build_error_response,
    build_legacy_in_response,
    build_legacy_out_response,
    build_switching_protocols,
    parse_request_head,
    websocket_accept,
)
from gateway.rdg_session import HandshakeDone, RdgServerSession
from tests.gateway import vectors as v

# The request FreeRDP 2.11.7 sends (PROTOCOLS.md §4.2), byte for byte in its header order.
FREERDP_UPGRADE = (
    b"RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Pragma: no-cache\r\n"
    b"Accept: */*\r\n"
    b"User-Agent: MS-RDGateway/1.0\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: websocket\r\n"
    b"Sec-Websocket-Version: 13\r\n"
    b"Sec-Websocket-Key: NF_L^XYECXCQPRX\r\n"
    b"RDG-Connection-Id: {33bb2a72-b2e0-e54f-27dd-131ac73a583b}\r\n"
    b"RDG-Auth-Scheme: PAA\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

LEGACY_OUT = FREERDP_UPGRADE.replace(b"Connection: Upgrade\r\nUpgrade: websocket\r\n", b"Connection: Keep-Alive\r\n") \
    .replace(b"Sec-Websocket-Version: 13\r\nSec-Websocket-Key: NF_L^XYECXCQPRX\r\n", b"")
LEGACY_IN_CHUNKED = LEGACY_OUT.replace(b"RDG_OUT_DATA", b"RDG_IN_DATA").replace(
    b"Content-Length: 0", b"Transfer-Encoding: chunked"
)


def head_of(data: bytes):
    head, consumed = parse_request_head(data)
    assert head is not None
    return head, consumed


def refused(data: bytes) -> HttpError:
    with pytest.raises(HttpError) as caught:
        parse_request_head(data)
    return caught.value


def request(*header_lines: str, line: str = "RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1") -> bytes:
    return ("\r\n".join((line, *header_lines)) + "\r\n\r\n").encode("latin-1")


# --- FreeRDP's upgrade --------------------------------------------------------------------------


def test_it_parses_freerdps_upgrade_request():
    head, consumed = head_of(FREERDP_UPGRADE)
    assert consumed == len(FREERDP_UPGRADE)
    assert (head.method, head.path, head.query) == ("RDG_OUT_DATA", "/remoteDesktopGateway/", "")
    assert head.is_rdg_path
    assert head.is_websocket_upgrade
    assert head.websocket_key == "NF_L^XYECXCQPRX"
    assert head.connection_id == "{33bb2a72-b2e0-e54f-27dd-131ac73a583b}"
    assert head.auth_scheme == "PAA"
    assert head.content_length == 0
    assert not head.chunked


def test_header_names_are_case_insensitive():
    head, _ = head_of(FREERDP_UPGRADE)
    assert head.headers["sec-websocket-key"] == head.headers["Sec-WebSocket-Key"] == "NF_L^XYECXCQPRX"
    assert head.headers["USER-AGENT"] == "MS-RDGateway/1.0"


def test_the_accept_value_is_computed_over_freerdps_15_character_key_as_sent():
    assert websocket_accept("NF_L^XYECXCQPRX") == "wlpUOmmRxLOSiLKr+1lbZ9U4fNg="


def test_the_accept_value_matches_rfc_6455s_example():
    assert websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_the_101_response_carries_exactly_what_freerdp_checks():
    assert build_switching_protocols("NF_L^XYECXCQPRX") == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: wlpUOmmRxLOSiLKr+1lbZ9U4fNg=\r\n"
        b"\r\n"
    )


def test_a_standard_get_upgrade_is_accepted_too():
    head, _ = head_of(request("Host: gw", "Connection: keep-alive, Upgrade", "Upgrade: WebSocket",
                              "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                              line="GET /raw/abc?x=1 HTTP/1.1"))
    assert (head.method, head.path, head.query) == ("GET", "/raw/abc", "x=1")
    assert head.websocket_key == "dGhlIHNhbXBsZSBub25jZQ=="
    assert not head.is_rdg_path


def test_an_incomplete_head_waits_and_the_bytes_after_it_are_left_alone():
    for cut in range(len(FREERDP_UPGRADE)):
        assert parse_request_head(FREERDP_UPGRADE[:cut]) == (None, 0)
    frame = b"\x82\x8e" + b"\x00" * 18
    head, consumed = head_of(FREERDP_UPGRADE + frame)
    assert (FREERDP_UPGRADE + frame)[consumed:] == frame


def test_it_parses_the_legacy_requests():
    out_head, _ = head_of(LEGACY_OUT)
    assert out_head.method == "RDG_OUT_DATA"
    assert not out_head.is_websocket_upgrade
    in_head, _ = head_of(LEGACY_IN_CHUNKED)
    assert in_head.method == "RDG_IN_DATA"
    assert in_head.chunked and in_head.content_length is None
    assert in_head.connection_id == out_head.connection_id


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "RPC_IN_DATA", "CONNECT"])
def test_other_methods_are_refused_with_405(method):
    error = refused(request("Host: gw", line=f"{method} /remoteDesktopGateway/ HTTP/1.1"))
    assert error.status == 405


@pytest.mark.parametrize(("data", "problem"), [
    (request("Host: gw", line="RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.0"), "HTTP/1.1 required"),
    (request("Host: gw", line="RDG_OUT_DATA  /remoteDesktopGateway/ HTTP/1.1"), "malformed request line"),
    (request("Host: gw", line="RDG_OUT_DATA"), "malformed request line"),
    (request("Host: gw", line="RDG_OUT_DATA http://gw/remoteDesktopGateway/ HTTP/1.1"), "absolute path"),
    (request("Host gw"), "malformed header line"),
    (request("Host : gw"), "malformed header line"),
    (request("Host: gw", " folded"), "malformed header line"),
    (request("Host: g\x00w"), "invalid characters"),
    (request("Host: gw\nX-Smuggled: 1"), "invalid characters"),
    (request("Content-Length: -1"), "invalid Content-Length"),
    (request("Content-Length: 0", "Content-Length: 0"), "more than one Content-Length"),
    (request("Content-Length: 0", "Transfer-Encoding: chunked"), "both Content-Length and Transfer-Encoding"),
    (request("Transfer-Encoding: gzip, chunked"), "only Transfer-Encoding: chunked"),
    (request("Upgrade: websocket", "Sec-WebSocket-Key: abc"), "without Connection: Upgrade"),
    (request("Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 8", "Sec-WebSocket-Key: abc"),
     "Sec-WebSocket-Version"),
    (request("Connection: Upgrade", "Upgrade: websocket"), "Sec-WebSocket-Key"),
    (request("Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: " + "A" * 65), "Sec-WebSocket-Key"),
    (request("Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: a b"), "Sec-WebSocket-Key"),
    (request("Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: a", "Sec-WebSocket-Key: b"),
     "more than one Sec-WebSocket-Key"),
])
def test_malformed_or_ambiguous_requests_are_refused_with_400(data, problem):
    error = refused(data)
    assert error.status == 400
    assert problem in error.message


def test_too_many_headers_are_refused():
    assert "header lines" in refused(request(*[f"X-H{i}: {i}" for i in range(65)])).message
    head_of(request(*[f"X-H{i}: {i}" for i in range(64)]))


def test_a_head_that_never_ends_is_refused_once_it_reaches_16_kib():
    endless = b"RDG_OUT_DATA /remoteDesktopGateway/ HTTP/1.1\r\nX-Fill: " + b"a" * (MAX_HEAD_SIZE - 100)
    assert parse_request_head(endless) == (None, 0)
    error = refused(endless + b"a" * 100)
    assert error.status == 400 and "larger than" in error.message


# --- responses ----------------------------------------------------------------------------------


def test_the_legacy_out_response_is_a_200_without_length_followed_by_a_10_byte_seed():
    response = build_legacy_out_response(b"\xab\xcd" * 5)
    head, _, seed = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length" not in head.lower() and b"content-type" not in head.lower()
    assert seed == b"\xab\xcd" * 5


def test_the_seed_is_random_unless_given():
    first, second = build_legacy_out_response(), build_legacy_out_response()
    assert len(first) == len(second)
    assert first[-SEED_LENGTH:] != second[-SEED_LENGTH:]
    with pytest.raises(ValueError):
        build_legacy_out_response(b"short")


def test_the_legacy_in_response_is_an_empty_200():
    assert build_legacy_in_response() == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(("status", "phrase"), [
    (400, b"Bad Request"), (401, b"Unauthorized"), (403, b"Forbidden"), (404, b"Not Found"),
    (405, b"Method Not Allowed"),
])
def test_error_responses_are_short_text_with_a_correct_length(status, phrase):
    response = build_error_response(status, "nope")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase))
    assert b"Content-Length: %d" % len(body) in head
    assert b"Connection: close" in head
    assert body == b"nope\n"
    assert (b"Allow: GET, RDG_OUT_DATA, RDG_IN_DATA" in head) == (status == 405)


def test_an_error_response_without_a_message_says_the_status_phrase():
    assert build_error_response(404).endswith(b"\r\n\r\nNot Found\n")
    with pytest.raises(ValueError):
        build_error_response(200)


# --- the legacy chunked upload ------------------------------------------------------------------


def freerdp_chunk(packet: bytes) -> bytes:
    """How FreeRDP 2.11 frames a packet: upper-case hex for control packets, lower-case for DATA."""
    size = f"{len(packet):x}" if packet[0] == rdg.PacketType.DATA else f"{len(packet):X}"
    return size.encode() + b"\r\n" + packet + b"\r\n"


def test_it_decodes_freerdps_chunks_with_either_hex_case():
    data_packet = rdg.build_data(b"z" * 0x2B)  # 0x35 bytes: lower-case "35" vs upper-case
    stream = freerdp_chunk(v.HANDSHAKE_REQUEST) + freerdp_chunk(v.TUNNEL_CREATE) + freerdp_chunk(data_packet)
    assert b"2C\r\n" in stream and b"35\r\n" in stream
    assert b"".join(ChunkedDecoder().feed(stream)) == v.HANDSHAKE_REQUEST + v.TUNNEL_CREATE + data_packet


def test_chunks_decode_the_same_fed_byte_by_byte():
    stream = freerdp_chunk(v.TUNNEL_CREATE) + freerdp_chunk(v.DATA_ABC)
    decoder = ChunkedDecoder()
    out = b"".join(b"".join(decoder.feed(stream[i:i + 1])) for i in range(len(stream)))
    assert out == v.TUNNEL_CREATE + v.DATA_ABC


def test_the_longest_size_line_decodes_however_it_is_split():
    # Found by tests/fuzz/fuzz_gateway_http.py: a 64-character size line (extensions included) fed up to
    # its CR was refused as too long, while the same bytes fed at once decoded.
    stream = b"3;" + b"x" * 62 + b"\r\nabc\r\n"
    assert ChunkedDecoder().feed(stream) == [b"abc"]
    decoder = ChunkedDecoder()
    assert b"".join(b"".join(decoder.feed(stream[i:i + 1])) for i in range(len(stream))) == b"abc"
    for split in (65, 66):
        decoder = ChunkedDecoder()
        assert decoder.feed(stream[:split]) == [] and decoder.feed(stream[split:]) == [b"abc"]


def test_a_size_line_one_longer_is_refused_however_it_is_split():
    stream = b"3;" + b"x" * 63 + b"\r\nabc\r\n"
    with pytest.raises(HttpError, match="size line too long"):
        ChunkedDecoder().feed(stream)
    decoder = ChunkedDecoder()
    with pytest.raises(HttpError, match="size line too long"):
        for i in range(len(stream)):
            decoder.feed(stream[i:i + 1])


def test_chunk_extensions_are_ignored_and_the_last_chunk_finishes_the_body():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3;name=value\r\nabc\r\n0\r\n") == [b"abc"]
    assert not decoder.finished
    assert decoder.feed(b"\r\n") == []
    assert decoder.finished


@pytest.mark.parametrize(("stream", "problem"), [
    (b"zz\r\n", "invalid chunk size"),
    (b"\r\n", "invalid chunk size"),
    (b"-1\r\n", "invalid chunk size"),
    (b"123456789\r\n", "invalid chunk size"),
    (b"3\r\nabcXY", "not followed by CRLF"),
    (b"0\r\nTrailer: x\r\n\r\n", "trailers"),
    (b"0\r\n\r\n1\r\n", "after the last chunk"),
    (b"1" * 70, "size line too long"),
])
def test_malformed_chunks_are_refused(stream, problem):
    with pytest.raises(HttpError) as caught:
        ChunkedDecoder().feed(stream)
    assert caught.value.status == 400
    assert problem in caught.value.message


def test_a_chunk_larger_than_one_packet_is_refused_from_its_size_line():
    with pytest.raises(HttpError, match="exceeds"):
        ChunkedDecoder().feed(b"%X\r\n" % (rdg.MAX_PACKET_LENGTH + 1))
    assert ChunkedDecoder(max_chunk_size=16).feed(b"10\r\n") == []
    with pytest.raises(HttpError, match="exceeds"):
        ChunkedDecoder(max_chunk_size=16).feed(b"11\r\n")


def test_the_decoded_upload_drives_a_session():
    decoder = ChunkedDecoder()
    session = RdgServerSession()
    events = []
    for piece in decoder.feed(freerdp_chunk(v.HANDSHAKE_REQUEST)[:9]) + decoder.feed(
            freerdp_chunk(v.HANDSHAKE_REQUEST)[9:]):
        events += session.receive_data(piece).events
    assert events == [HandshakeDone(rdg.ExtendedAuth.PAA)]
