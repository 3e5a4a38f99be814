"""The gateway's HTTP layer, all of it reading a client's bytes: the request head and the WebSocket
upgrade (``gateway/httpupgrade.py`` ``parse_request_head``), the legacy chunked upload (``ChunkedDecoder``)
and the WebSocket framing after the upgrade (``gateway/wsframing.py``).

What holds for any input:
- ``parse_request_head`` returns a head (of at most 16 KiB, an allowed method, an absolute path) or
  ``(None, 0)`` while the head is incomplete, and raises ``HttpError`` with a 4xx/5xx status and nothing
  else; what the listener does next with a head (its headers, the 101 for its key, an error response)
  raises nothing but ``HttpError`` either.
- ``ChunkedDecoder`` raises ``HttpError(400)`` and nothing else, gives back no more bytes than it was fed,
  and gives the same body however the bytes are split.
- ``ServerWebSocket`` never raises while the connection is open, gives back no more payload than it was
  fed, and the same payload however the bytes are split.
"""
from __future__ import annotations

from gateway import httpupgrade
from gateway.wsframing import ServerWebSocket

MAX_FRAME_SIZE = 4096  # small, so the fuzzer reaches the oversized-frame refusal


def test_one_input(data: bytes) -> None:
    check_request_head(data)
    stride = 1 + len(data) % 11
    pieces = [data[start:start + stride] for start in range(0, len(data), stride)]
    assert decode_chunked([data]) == decode_chunked(pieces)
    assert read_frames([data]) == read_frames(pieces)


def check_request_head(data: bytes) -> None:
    try:
        head, consumed = httpupgrade.parse_request_head(data)
    except httpupgrade.HttpError as error:
        check_http_error(error)
        return
    if head is None:
        assert consumed == 0 and len(data) < httpupgrade.MAX_HEAD_SIZE
        return
    assert 4 <= consumed <= min(len(data), httpupgrade.MAX_HEAD_SIZE + 3)
    assert data[consumed - 4:consumed] == b"\r\n\r\n"
    assert head.method in httpupgrade.ALLOWED_METHODS and head.path.startswith("/")
    assert head.content_length is None or head.content_length >= 0
    if head.websocket_key is not None:
        assert httpupgrade.build_switching_protocols(head.websocket_key).endswith(b"\r\n\r\n")
    assert isinstance(head.is_rdg_path, bool) and isinstance(httpupgrade.upgrade_tokens(head), set)
    for read in (lambda: head.connection_id, lambda: head.auth_scheme):
        try:
            read()
        except httpupgrade.HttpError as error:
            check_http_error(error)


def check_http_error(error: httpupgrade.HttpError) -> None:
    assert 400 <= error.status <= 599, error.status
    assert httpupgrade.build_error_response(error.status, error.message).startswith(b"HTTP/1.1 ")


def decode_chunked(pieces: list[bytes]) -> tuple[bytes, bool] | None:
    """The body and whether it ended, or None when the decoder refused the upload."""
    decoder = httpupgrade.ChunkedDecoder(max_chunk_size=1024)
    body = b""
    try:
        for piece in pieces:
            body += b"".join(decoder.feed(piece))
    except httpupgrade.HttpError as error:
        assert error.status == 400
        return None
    assert len(body) <= sum(map(len, pieces))
    return body, decoder.finished


def read_frames(pieces: list[bytes]) -> tuple[bytes, bool]:
    """The binary payload received and whether the connection must close, as the transport reads them."""
    websocket = ServerWebSocket(max_frame_size=MAX_FRAME_SIZE)
    payload = b""
    for piece in pieces:
        payload += b"".join(websocket.receive_data(piece))
        websocket.data_to_send()
        if websocket.should_close_transport:
            break
    assert len(payload) <= sum(map(len, pieces))
    return payload, websocket.should_close_transport
