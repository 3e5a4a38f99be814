"""RDCleanPath: the browser client's first message and the gateway's answer (PROTOCOLS.md §8).

IronRDP's web client opens a WebSocket to the gateway and sends one DER-encoded RDCleanPath PDU: the
protocol version (3390), a destination, a proxy-auth string (our single-use web ticket), an optional
preconnection blob and the TPKT-framed X.224 Connection Request. The gateway answers with one PDU too:
the server's X.224 Connection Confirm, its certificate chain (DER, leaf first) and its address, or an
error (code 1 general, 2 negotiation; an HTTP status, a WSA error or a TLS alert, each optional). After
that the WebSocket carries the client's plaintext RDP.

Layout (IronRDP ``crates/ironrdp-rdcleanpath``; every field has an EXPLICIT context tag)::

    RDCleanPathPdu ::= SEQUENCE {
        version            [0] INTEGER,                   -- 3390
        error              [1] RDCleanPathErr OPTIONAL,
        destination        [2] UTF8String OPTIONAL,
        proxy_auth         [3] UTF8String OPTIONAL,
        server_auth        [4] UTF8String OPTIONAL,       -- unused
        preconnection_blob [5] UTF8String OPTIONAL,
        x224_connection_pdu [6] OCTET STRING OPTIONAL,
        server_cert_chain  [7] SEQUENCE OF OCTET STRING OPTIONAL,
        server_addr        [9] UTF8String OPTIONAL }
    RDCleanPathErr ::= SEQUENCE {
        error_code [0] INTEGER, http_status_code [1] INTEGER OPTIONAL,
        wsa_last_error [2] INTEGER OPTIONAL, tls_alert_code [3] INTEGER OPTIONAL }

The DER is our own, strict and small: four universal types (INTEGER, UTF8String, OCTET STRING,
SEQUENCE) and explicit context tags, definite minimal lengths only, fields in tag order, nothing after
the PDU. A library was tried first: asn1crypto (whose lazy parser also reads BER) raised an
AttributeError on a one-byte mutation of IronRDP's own response vector within the fuzzer's first 600
inputs (``tests/fuzz/seeds.py``, REGRESSIONS), and pyasn1's decoder accepts BER unless another package is
added; a hundred lines that accept exactly this grammar are easier to bound and to fuzz. Inputs are
bounded before parsing.

Pure code (no Django, no dependency).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

VERSION = 3390  # IronRDP's VERSION_1 (BASE_VERSION 3389 + 1)
# Where the gateway listener serves the browser client: ``wss://<gateway public host>:<port>`` + this.
WEBSOCKET_PATH = "/remoteDesktopGateway/rdcleanpath"
GENERAL_ERROR = 1
NEGOTIATION_ERROR = 2
# A request is a few hundred bytes (a ticket of about 400 characters and an X.224 request of ~50); the
# browser's first message is refused past this before any parsing.
MAX_REQUEST_SIZE = 16 * 1024
MAX_STRING = 4096  # destination, proxy_auth, preconnection blob
MAX_X224 = 1024  # a Connection Request with a cookie is well below this
MAX_CHAIN = 16  # certificates in a chain we send or read

INTEGER, OCTET_STRING, UTF8_STRING, SEQUENCE = 0x02, 0x04, 0x0C, 0x30
CONTEXT = 0xA0  # context-specific, constructed: [n] EXPLICIT is CONTEXT | n

# The PDU's fields: tag number -> (name, what the explicit tag holds).
PDU_FIELDS: dict[int, tuple[str, str]] = {
    0: ("version", "int"), 1: ("error", "error"), 2: ("destination", "str"), 3: ("proxy_auth", "str"),
    4: ("server_auth", "str"), 5: ("preconnection_blob", "str"), 6: ("x224_connection_pdu", "bytes"),
    7: ("server_cert_chain", "chain"), 9: ("server_addr", "str"),
}
ERROR_FIELDS: dict[int, tuple[str, str]] = {
    0: ("error_code", "int"), 1: ("http_status_code", "int"), 2: ("wsa_last_error", "int"),
    3: ("tls_alert_code", "int"),
}


class RDCleanPathError(ValueError):
    """Not an RDCleanPath PDU we accept; the message says why (for the log and the client's error)."""


@dataclass(frozen=True)
class Request:
    """The browser's first message."""

    destination: str
    proxy_auth: str
    x224_connection_request: bytes
    preconnection_blob: str | None = None
    server_auth: str | None = None


@dataclass(frozen=True)
class ErrorInfo:
    """An error answer: ``error_code`` 1 (general) or 2 (negotiation, with the server's CC)."""

    error_code: int
    http_status_code: int | None = None
    wsa_last_error: int | None = None
    tls_alert_code: int | None = None


@dataclass(frozen=True)
class Response:
    """Any PDU the gateway sends (decoded, for tests and our own client)."""

    error: ErrorInfo | None
    x224_connection_pdu: bytes | None
    server_cert_chain: tuple[bytes, ...] | None
    server_addr: str | None


# --- reading ---------------------------------------------------------------------------------------


def _load(data: bytes, limit: int) -> dict:
    """The PDU's fields by name (absent ones missing), after every DER and bound check."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RDCleanPathError("an RDCleanPath PDU is binary")
    data = bytes(data)
    if not data:
        raise RDCleanPathError("empty message")
    if len(data) > limit:
        raise RDCleanPathError(f"message of {len(data)} bytes exceeds {limit}")
    tag, body, end = _tlv(data, 0)
    if tag != SEQUENCE:
        raise RDCleanPathError("not a DER SEQUENCE")
    if end != len(data):
        raise RDCleanPathError(f"{len(data) - end} bytes after the PDU")
    values = _fields(body, PDU_FIELDS)
    if values.get("version") != VERSION:
        raise RDCleanPathError(f"unsupported RDCleanPath version {values.get('version')!r} (expected {VERSION})")
    return values


def _tlv(data: bytes, at: int) -> tuple[int, bytes, int]:
    """The tag, the contents and the offset after one DER element starting at ``at``."""
    if at + 2 > len(data):
        raise RDCleanPathError("truncated DER element")
    tag, first = data[at], data[at + 1]
    if tag & 0x1F == 0x1F:
        raise RDCleanPathError("a high tag number (no such field)")
    at += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise RDCleanPathError("an indefinite length (BER, not DER)")
    else:
        count = first & 0x7F
        if count > 4 or at + count > len(data):
            raise RDCleanPathError("a truncated or oversized length")
        length = int.from_bytes(data[at:at + count], "big")
        if length < 0x80 or data[at] == 0:
            raise RDCleanPathError("a length not in its shortest form (BER, not DER)")
        at += count
    if at + length > len(data):
        raise RDCleanPathError("truncated DER element")
    return tag, data[at:at + length], at + length


def _fields(body: bytes, spec: dict[int, tuple[str, str]]) -> dict:
    """A SEQUENCE's explicitly tagged fields, each at most once and in tag order (as DER has them)."""
    values: dict = {}
    at, last = 0, -1
    while at < len(body):
        tag, inner, at = _tlv(body, at)
        number = tag - CONTEXT
        if not 0 <= number <= 30 or number not in spec:
            raise RDCleanPathError(f"unexpected element with tag {tag:#04x}")
        if number <= last:
            raise RDCleanPathError(f"field [{number}] out of order or repeated")
        last = number
        name, kind = spec[number]
        inner_tag, content, inner_end = _tlv(inner, 0)
        if inner_end != len(inner):
            raise RDCleanPathError(f"bytes after the value of [{number}]")
        values[name] = _value(kind, inner_tag, content, name)
    if "version" in {n for n, _ in spec.values()} and "version" not in values:
        raise RDCleanPathError("no version")
    if "error_code" in {n for n, _ in spec.values()} and "error_code" not in values:
        raise RDCleanPathError("an error without its code")
    return values


def _value(kind: str, tag: int, content: bytes, name: str):
    if kind == "int":
        if tag != INTEGER:
            raise RDCleanPathError(f"{name} is not an INTEGER")
        return _integer(content, name)
    if kind == "str":
        if tag != UTF8_STRING:
            raise RDCleanPathError(f"{name} is not a UTF8String")
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            raise RDCleanPathError(f"{name} is not valid UTF-8") from None
    if kind == "bytes":
        if tag != OCTET_STRING:
            raise RDCleanPathError(f"{name} is not an OCTET STRING")
        return content
    if tag != SEQUENCE:
        raise RDCleanPathError(f"{name} is not a SEQUENCE")
    if kind == "error":
        return _fields(content, ERROR_FIELDS)
    chain, at = [], 0  # kind == "chain": SEQUENCE OF OCTET STRING
    while at < len(content):
        item_tag, item, at = _tlv(content, at)
        if item_tag != OCTET_STRING:
            raise RDCleanPathError("a certificate that is not an OCTET STRING")
        chain.append(item)
        if len(chain) > MAX_CHAIN:
            raise RDCleanPathError(f"more than {MAX_CHAIN} certificates")
    return chain


def _integer(content: bytes, name: str) -> int:
    """A non-negative INTEGER of at most 8 bytes in its minimal form (every one RDCleanPath has)."""
    if not content or len(content) > 9:
        raise RDCleanPathError(f"{name} is not a small INTEGER")
    if len(content) > 1 and (content[0] == 0 and content[1] < 0x80 or content[0] == 0xFF and content[1] >= 0x80):
        raise RDCleanPathError(f"{name} is not in its minimal form (BER, not DER)")
    if content[0] >= 0x80:
        raise RDCleanPathError(f"{name} is negative")
    return int.from_bytes(content, "big")


def pdu_length(prefix: bytes) -> int | None:
    """The whole PDU's length from its first bytes (None: not enough yet), so a reader knows when the
    browser's first message is complete; RDCleanPathError when it cannot be an RDCleanPath PDU or would
    exceed MAX_REQUEST_SIZE."""
    if not prefix:
        return None
    if prefix[0] != SEQUENCE:
        raise RDCleanPathError("not a DER SEQUENCE")
    if len(prefix) < 2:
        return None
    first = prefix[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if first == 0x80 or count > 2:
        raise RDCleanPathError("an indefinite or oversized length")
    if len(prefix) < 2 + count:
        return None
    total = 2 + count + int.from_bytes(prefix[2:2 + count], "big")
    if total > MAX_REQUEST_SIZE:
        raise RDCleanPathError(f"a message of {total} bytes exceeds {MAX_REQUEST_SIZE}")
    return total


def decode_request(data: bytes) -> Request:
    """The browser's request; RDCleanPathError for anything else (an error PDU, a response, a request
    without its proxy_auth or X.224 PDU, values out of bounds)."""
    values = _load(data, MAX_REQUEST_SIZE)
    if values.get("error") is not None or values.get("server_cert_chain") is not None \
            or values.get("server_addr") is not None:
        raise RDCleanPathError("a response or an error where a request was expected")
    destination, proxy_auth, x224 = values.get("destination"), values.get("proxy_auth"), \
        values.get("x224_connection_pdu")
    if destination is None:
        raise RDCleanPathError("the request has no destination")
    if proxy_auth is None:
        raise RDCleanPathError("the request has no proxy_auth")
    if x224 is None:
        raise RDCleanPathError("the request has no X.224 Connection Request")
    for name in ("destination", "proxy_auth", "preconnection_blob", "server_auth"):
        value = values.get(name)
        if value is not None and len(value) > MAX_STRING:
            raise RDCleanPathError(f"{name} is longer than {MAX_STRING} characters")
    if len(x224) > MAX_X224:
        raise RDCleanPathError(f"the X.224 PDU is longer than {MAX_X224} bytes")
    return Request(destination=destination, proxy_auth=proxy_auth, x224_connection_request=bytes(x224),
                   preconnection_blob=values.get("preconnection_blob"), server_auth=values.get("server_auth"))


def decode_response(data: bytes, limit: int = 1 << 20) -> Response:
    """A gateway's answer (a response or an error); for our test client and tools."""
    values = _load(data, limit)
    error = values.get("error")
    chain = values.get("server_cert_chain")
    return Response(
        error=ErrorInfo(**error) if error is not None else None,
        x224_connection_pdu=values.get("x224_connection_pdu"),
        server_cert_chain=tuple(chain) if chain is not None else None,
        server_addr=values.get("server_addr"),
    )


# --- writing ---------------------------------------------------------------------------------------


def encode_request(*, destination: str, proxy_auth: str, x224_connection_request: bytes,
                   preconnection_blob: str | None = None) -> bytes:
    """A browser's request (what IronRDP's client sends; our tests' client uses it)."""
    fields = {"version": VERSION, "destination": destination, "proxy_auth": proxy_auth,
              "x224_connection_pdu": bytes(x224_connection_request)}
    if preconnection_blob is not None:
        fields["preconnection_blob"] = preconnection_blob
    return _pdu(fields)


def encode_response(*, server_addr: str, x224_connection_confirm: bytes, server_cert_chain: Sequence[bytes]) -> bytes:
    """The success answer: the server's X.224 Connection Confirm, its chain (DER, leaf first), its address."""
    if not server_cert_chain:
        raise ValueError("the certificate chain needs at least the server's own certificate")
    return _pdu({"version": VERSION, "x224_connection_pdu": bytes(x224_connection_confirm),
                 "server_cert_chain": [bytes(cert) for cert in server_cert_chain], "server_addr": server_addr})


def encode_error(*, error_code: int = GENERAL_ERROR, http_status_code: int | None = None,
                 wsa_last_error: int | None = None, tls_alert_code: int | None = None,
                 x224_connection_confirm: bytes | None = None) -> bytes:
    """An error answer; a negotiation error (code 2) carries the server's Connection Confirm."""
    _check_range("error_code", error_code, 0xFFFF)
    err = {"error_code": error_code}
    for name, value, top in (("http_status_code", http_status_code, 0xFFFF),
                             ("wsa_last_error", wsa_last_error, 0xFFFF), ("tls_alert_code", tls_alert_code, 0xFF)):
        if value is not None:
            _check_range(name, value, top)
            err[name] = value
    fields = {"version": VERSION, "error": err}
    if x224_connection_confirm is not None:
        fields["x224_connection_pdu"] = bytes(x224_connection_confirm)
    return _pdu(fields)


def _pdu(fields: dict) -> bytes:
    return _element(SEQUENCE, _encode_fields(fields, PDU_FIELDS))


def _encode_fields(fields: dict, spec: dict[int, tuple[str, str]]) -> bytes:
    out = bytearray()
    for number, (name, kind) in sorted(spec.items()):
        value = fields.get(name)
        if value is None:
            continue
        if kind == "int":
            inner = _element(INTEGER, _integer_bytes(value))
        elif kind == "str":
            inner = _element(UTF8_STRING, str(value).encode("utf-8"))
        elif kind == "bytes":
            inner = _element(OCTET_STRING, bytes(value))
        elif kind == "error":
            inner = _element(SEQUENCE, _encode_fields(value, ERROR_FIELDS))
        else:
            inner = _element(SEQUENCE, b"".join(_element(OCTET_STRING, bytes(cert)) for cert in value))
        out += _element(CONTEXT | number, inner)
    return bytes(out)


def _element(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def _integer_bytes(value: int) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("RDCleanPath integers are non-negative")
    return value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 only where the sign bit needs it


def _check_range(name: str, value: int, top: int) -> None:
    # IronRDP reads these as u16 (the TLS alert as u8): a larger value would fail its whole decode.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise ValueError(f"{name} must be an integer in 0..{top}")


