"""A recording RD Gateway: just enough of MS-TSGU to see what a real client sends, then hang up.

It accepts TLS (a certificate from a throwaway CA made at start; the client trusts that CA, ``ca_file``),
reads the HTTP upgrade head,
answers 101 with the Sec-WebSocket-Accept FreeRDP 2 checks (computed over its non-standard 15-char key),
answers the HANDSHAKE_REQUEST, records the TUNNEL_CREATE (PAA token) and closes. PROTOCOLS.md §4.2-4.4.

Test code of its own: the product's gateway lives in ``gateway/`` and is tested against this client
behaviour separately. The byte-level parts are pure functions, tested with published vectors.
"""
from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import ssl
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from testbed.xrdp import TestBedError, issue_certificate, run_xfreerdp, self_signed_certificate, write_private

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES = 16 * 1024
MAX_FRAME_PAYLOAD = 1024 * 1024
MAX_STREAM_BYTES = 4 * 1024 * 1024

PKT_HANDSHAKE_REQUEST = 0x1
PKT_TUNNEL_CREATE = 0x4
# errorCode 0, version 1.0, serverVersion 0, extendedAuth PAA (PROTOCOLS.md §4.4).
HANDSHAKE_RESPONSE = bytes.fromhex("02000000120000000000000001000000" "0200")
TUNNEL_CREATE_PAA_PRESENT = 0x1
TUNNEL_CREATE_REAUTH_PRESENT = 0x2


# --- pure functions over bytes ------------------------------------------------------------------


def websocket_accept(key: str) -> str:
    """Sec-WebSocket-Accept for a key exactly as sent (FreeRDP 2's 15-char key included)."""
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode("latin-1")).digest()).decode("ascii")


def parse_request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """``(method, path, headers)`` of an HTTP/1.1 request head; header names lower-cased."""
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, path, version = request_line.split(" ")
    except ValueError:
        raise ValueError(f"malformed request line in {head[:80]!r}") from None
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x request: {version!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return method, path, headers


def decode_client_frame(buffer: bytes) -> tuple[int, bytes, int] | None:
    """Decode one client WebSocket frame: ``(opcode, unmasked payload, bytes consumed)``.

    ``None`` when ``buffer`` holds no complete frame yet. Client frames must be masked (RFC 6455 §5.1).
    """
    if len(buffer) < 2:
        return None
    opcode = buffer[0] & 0x0F
    masked = buffer[1] & 0x80
    length = buffer[1] & 0x7F
    offset = 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack_from("!H", buffer, 2)
        offset = 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,) = struct.unpack_from("!Q", buffer, 2)
        offset = 10
    if not masked:
        raise ValueError("client WebSocket frame is not masked")
    if length > MAX_FRAME_PAYLOAD:
        raise ValueError(f"WebSocket frame of {length} bytes exceeds {MAX_FRAME_PAYLOAD}")
    if len(buffer) < offset + 4 + length:
        return None
    mask = buffer[offset : offset + 4]
    data = buffer[offset + 4 : offset + 4 + length]
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, payload, offset + 4 + length


def encode_server_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One final, unmasked server frame (FreeRDP 2 aborts on masked server frames)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


def split_packet(stream: bytes) -> tuple[int, bytes, bytes] | None:
    """Take one TSGU packet off the front of ``stream``: ``(packet type, whole packet, rest)``."""
    if len(stream) < 8:
        return None
    packet_type, _reserved, packet_length = struct.unpack_from("<HHI", stream)
    if packet_length < 8:
        raise ValueError(f"TSGU packet length {packet_length} is shorter than its header")
    if len(stream) < packet_length:
        return None
    return packet_type, stream[:packet_length], stream[packet_length:]


@dataclass(frozen=True)
class TunnelCreate:
    caps_flags: int
    fields_present: int
    paa_token: str | None


def parse_tunnel_create(packet: bytes) -> TunnelCreate:
    """Parse a TUNNEL_CREATE packet (header included); the PAA cookie's trailing NUL is stripped."""
    if len(packet) < 16:
        raise ValueError("TUNNEL_CREATE shorter than 16 bytes")
    packet_type, _, packet_length = struct.unpack_from("<HHI", packet)
    if packet_type != PKT_TUNNEL_CREATE or packet_length != len(packet):
        raise ValueError("not a whole TUNNEL_CREATE packet")
    caps_flags, fields_present, _reserved = struct.unpack_from("<IHH", packet, 8)
    offset = 16
    if fields_present & TUNNEL_CREATE_REAUTH_PRESENT:
        offset += 8
    token = None
    if fields_present & TUNNEL_CREATE_PAA_PRESENT:
        if len(packet) < offset + 2:
            raise ValueError("TUNNEL_CREATE ends before the PAA cookie length")
        (cb_len,) = struct.unpack_from("<H", packet, offset)
        raw = packet[offset + 2 : offset + 2 + cb_len]
        if len(raw) != cb_len or cb_len % 2:
            raise ValueError("TUNNEL_CREATE PAA cookie is truncated or not UTF-16")
        token = raw.decode("utf-16-le")
        if token.endswith("\0"):
            token = token[:-1]
    return TunnelCreate(caps_flags=caps_flags, fields_present=fields_present, paa_token=token)


# --- the listener -------------------------------------------------------------------------------


@dataclass
class Recording:
    """What one client connection sent. ``error`` says where it stopped if it did not get to the end."""

    method: str = ""
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    handshake_request: bytes = b""
    caps_flags: int | None = None
    fields_present: int | None = None
    paa_token: str | None = None
    error: str | None = None
    client_exit_code: int | None = None
    client_output: str = ""


def _throwaway_ca_context(directory: Path) -> tuple[ssl.SSLContext, bytes]:
    """A TLS context with a certificate for 127.0.0.1 (and localhost) from a CA made here; and that CA's
    PEM, for the client to trust (FreeRDP checks a name against the CN and DNS names, so the address is
    both the CN and a DNS name)."""
    ca_cert, ca_key = self_signed_certificate("wvd e2e recording gateway CA", ca=True, days=1)
    cert_pem, key_pem = issue_certificate(ca_cert, ca_key, "127.0.0.1", ("localhost",), days=1)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert_pem)
    write_private(key_path, key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, ca_cert


class RecordingGateway:
    """A TLS listener on 127.0.0.1:<free port> recording each RD Gateway client connection in turn."""

    def __init__(self, *, io_timeout: float = 10.0):
        self.host = "127.0.0.1"
        self.port = 0
        self.io_timeout = io_timeout
        self.recordings: list[Recording] = []
        self._finished = threading.Event()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._context: ssl.SSLContext | None = None
        self.ca_file: Path | None = None  # the CA a client trusts to reach this recorder

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> RecordingGateway:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="wvd-recgw-"))
        try:
            self._context, ca_pem = _throwaway_ca_context(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)  # the key lives on in memory only
        self.ca_file = Path(tempfile.mkdtemp(prefix="wvd-recgw-ca-")) / "ca.pem"
        self.ca_file.write_bytes(ca_pem)
        self._listener = socket.create_server((self.host, 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="recording-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.io_timeout + 5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.ca_file is not None:
            shutil.rmtree(self.ca_file.parent, ignore_errors=True)
            self.ca_file = None

    def wait(self, timeout: float = 20.0) -> Recording | None:
        """The first connection's recording, once that connection is over; None if none came in time."""
        if not self._finished.wait(timeout):
            return None
        return self.recordings[0]

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            recording = Recording()
            self.recordings.append(recording)
            try:
                raw.settimeout(self.io_timeout)
                with self._context.wrap_socket(raw, server_side=True) as conn:
                    self._record(conn, recording)
            except (OSError, ValueError) as exc:
                recording.error = recording.error or f"{type(exc).__name__}: {exc}"
            finally:
                raw.close()
                self._finished.set()

    def _record(self, conn: ssl.SSLSocket, recording: Recording) -> None:
        head, rest = _read_head(conn)
        recording.method, recording.path, recording.headers = parse_request_head(head)
        key = recording.headers.get("sec-websocket-key")
        if key is None:
            recording.error = "no Sec-WebSocket-Key: not a WebSocket upgrade"
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        conn.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {websocket_accept(key)}\r\n\r\n"
            ).encode("latin-1")
        )
        frames, stream = rest, b""
        while True:
            packet = split_packet(stream)
            if packet is None:
                frames, payload, closed = _read_frame(conn, frames)
                if closed:
                    recording.error = "client closed before TUNNEL_CREATE"
                    return
                stream += payload
                if len(stream) > MAX_STREAM_BYTES:
                    raise ValueError("client sent too much before TUNNEL_CREATE")
                continue
            packet_type, data, stream = packet
            if packet_type == PKT_HANDSHAKE_REQUEST:
                recording.handshake_request = data
                conn.sendall(encode_server_frame(HANDSHAKE_RESPONSE))
            elif packet_type == PKT_TUNNEL_CREATE:
                tunnel = parse_tunnel_create(data)
                recording.caps_flags = tunnel.caps_flags
                recording.fields_present = tunnel.fields_present
                recording.paa_token = tunnel.paa_token
                return  # recorded: hang up
            else:
                recording.error = f"unexpected TSGU packet type {packet_type:#x} before TUNNEL_CREATE"
                return


def _read_head(conn: ssl.SSLSocket) -> tuple[bytes, bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD_BYTES:
            raise ValueError(f"HTTP request head longer than {MAX_HEAD_BYTES} bytes")
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("connection closed inside the HTTP request head")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _read_frame(conn: ssl.SSLSocket, buffer: bytes) -> tuple[bytes, bytes, bool]:
    """Read until one data frame is complete: ``(remaining buffer, payload, closed)``."""
    while True:
        frame = decode_client_frame(buffer)
        if frame is not None:
            opcode, payload, consumed = frame
            buffer = buffer[consumed:]
            if opcode == 0x8:
                return buffer, b"", True
            if opcode in (0x0, 0x2):  # binary, or its continuation
                return buffer, payload, False
            continue  # ping/pong/text: not part of the TSGU stream
        chunk = conn.recv(65536)
        if not chunk:
            return buffer, b"", True
        buffer += chunk


def record_rdp_file(
    path: Path | str,
    *,
    recorder: RecordingGateway | None = None,
    timeout: float = 20,
    display: str | None = None,
    extra_args: list[str] | None = None,
) -> Recording:
    """Open an .rdp file with xfreerdp and return what it sent to a recording gateway.

    With ``recorder`` the file is used as is: it must already name ``recorder.address`` as its
    gateway. Without, a recorder is started and ``/g:`` after the file points the client at it;
    note that ``/g:`` also forces gateway use, so it cannot tell whether the file's own
    ``gatewayusagemethod`` would have. The client trusts the recorder's throwaway CA (``ca_file``) and
    nothing else. Needs an X display (the ``xvfb`` fixture).
    """
    path = Path(path)
    if path.suffix.lower() != ".rdp":
        # xfreerdp only reads argv[1] as a file when its name ends in .rdp.
        raise ValueError(f"{path} must end in .rdp for xfreerdp to read it as a connection file")
    if recorder is None:
        with RecordingGateway() as own:
            return _run_and_record(path, own, [f"/g:{own.address}"], timeout, display, extra_args)
    return _run_and_record(path, recorder, [], timeout, display, extra_args)


def _run_and_record(
    path: Path,
    recorder: RecordingGateway,
    redirect: list[str],
    timeout: float,
    display: str | None,
    extra_args: list[str] | None,
) -> Recording:
    args = [str(path), *redirect, *(extra_args or [])]
    exit_code, output = run_xfreerdp(args, timeout=timeout, display=display, ca_file=recorder.ca_file)
    recording = recorder.wait(timeout=recorder.io_timeout + 1)
    if recording is None:
        raise TestBedError(
            f"xfreerdp exited with {exit_code} without ever reaching the recording gateway at "
            f"{recorder.address}; its output:\n{output}"
        )
    recording.client_exit_code = exit_code
    recording.client_output = output
    return recording
