"""The host channel's wire protocol: typed JSON messages between the control plane and a host agent.

Pure Python (no Django, no I/O), imported by the agent program, the server's consumer and the
broker alike. Every frame is one JSON object in a WebSocket text frame with a ``type``; ``decode_*``
checks size, JSON, type, every field's kind and bounds, and returns a clean message holding only the
known fields (unknown extra fields are dropped, so a newer peer can add optional fields). Anything
else raises ``ProtocolError`` with the close code the receiver should use.

The conversation:
  server → agent  challenge {nonce}
  agent  → server hello {certificate, signature over the nonce, agent_version}
  server → agent  welcome {session_host_id, name, heartbeat_interval}   (or error + close)
  agent  → server heartbeat {seq, checks, sessions} ... server → agent heartbeat_ack {seq}
  server → agent  command {id, command, args}   agent → server result {id, status, message, data}
  renew-certificate: agent → server csr {id, csr}; server → agent certificate {id, certificate, ...}
                     (or certificate_refused {id, message})
  the host's RDP certificate (agent-initiated, when the agent manages it: ``run --rdp-cert``):
                     agent → server rdp_csr {id, csr}; server → agent certificate {id, ...}
                     (or certificate_refused {id, message}); after installing it, and whenever it
                     looks again: agent → server rdp_certificate {presented_sha256, detail}
  agent  → server shutdown {reason}  before it stops on purpose
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable, Literal, NotRequired, TypedDict, Union

from wire import base64url

PROTOCOL_VERSION = 1
# Heartbeats are a few hundred bytes; a full session report of MAX_SESSIONS fits well inside this.
MAX_FRAME_BYTES = 64 * 1024
MAX_SESSIONS = 200
MAX_CHECKS = 32
NONCE_BYTES = 32

# WebSocket close codes (4000-4999 are ours). Under daphne the close reason text does not reach the
# peer, so the sender also sends an ``error`` message carrying the code and a sentence first.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
# Not 1009 ("message too big"): that is for the WebSocket layer itself, and daphne refuses it from an
# application (the peer then saw 1011). Ours, like the other application codes.
CLOSE_TOO_BIG = 4413
CLOSE_PROTOCOL_ERROR = 4400
CLOSE_AUTH_FAILED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_REPLACED = 4409
CLOSE_CREDENTIALS_SUPERSEDED = 4410
CLOSE_INTERNAL_ERROR = 4500

CLOSE_REASONS = {
    CLOSE_NORMAL: "closed",
    CLOSE_GOING_AWAY: "going away",
    CLOSE_TOO_BIG: "a frame was too large",
    CLOSE_PROTOCOL_ERROR: "a message broke the protocol",
    CLOSE_AUTH_FAILED: "authentication was refused",
    CLOSE_AUTH_TIMEOUT: "authentication took too long",
    CLOSE_REPLACED: "a newer channel for this host replaced this one",
    CLOSE_CREDENTIALS_SUPERSEDED: "this host's certificate was replaced or revoked",
    CLOSE_INTERNAL_ERROR: "the server failed",
}

# An agent's answer to a command: "unsupported" means this agent or OS cannot do it (never a fake
# success). The server adds "offline" and "timeout" for commands no agent answered (broker.hostbus, hostagent.commands).
RESULT_STATUSES = ("ok", "failed", "unsupported")
SESSION_STATES = ("active", "disconnected")

COMMAND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
COMMAND_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
USERNAME = re.compile(r"^[^\x00-\x1f\x7f]{1,150}$")


class ProtocolError(ValueError):
    """A frame that breaks the protocol; ``close_code`` is what the receiver closes the channel with."""

    def __init__(self, message: str, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


# --- Message types ------------------------------------------------------------------------------


class Challenge(TypedDict):
    type: Literal["challenge"]
    protocol: int
    nonce: str  # base64url of NONCE_BYTES random bytes


class Hello(TypedDict):
    type: Literal["hello"]
    protocol: int
    certificate: str  # the agent's host-agent certificate, PEM
    signature: str  # base64url; see wire.proof
    agent_version: str


class Welcome(TypedDict):
    type: Literal["welcome"]
    session_host_id: int
    name: str
    heartbeat_interval: int


class HealthCheck(TypedDict):
    name: str
    ok: bool
    fatal: bool  # a failed fatal check makes the host Unavailable; a non-fatal one Needs assistance
    detail: str


class SessionReport(TypedDict):
    session_id: int
    username: str
    state: Literal["active", "disconnected"]
    started_at: NotRequired[float]  # seconds since the epoch, when the host knows it


class Heartbeat(TypedDict):
    type: Literal["heartbeat"]
    seq: int
    agent_version: str
    checks: list[HealthCheck]
    # "unsupported" when the agent cannot see user sessions on this OS: no invented data.
    sessions: list[SessionReport] | Literal["unsupported"]


class HeartbeatAck(TypedDict):
    type: Literal["heartbeat_ack"]
    seq: int


class Command(TypedDict):
    type: Literal["command"]
    id: str
    command: str
    args: dict[str, Any]


class Result(TypedDict):
    type: Literal["result"]
    id: str
    status: Literal["ok", "failed", "unsupported"]
    message: str
    data: dict[str, Any]


class CertificateRequest(TypedDict):
    type: Literal["csr"]
    id: str  # the renew-certificate command this answers
    csr: str  # PEM


class IssuedCertificate(TypedDict):
    type: Literal["certificate"]
    id: str
    certificate: str  # PEM
    ca_certificate: str  # PEM


class CertificateRefused(TypedDict):
    type: Literal["certificate_refused"]
    id: str
    message: str


class RdpCertificateRequest(TypedDict):
    type: Literal["rdp_csr"]
    id: str  # chosen by the agent; the answer carries it
    csr: str  # PEM, common name = the host's name


class RdpCertificateReport(TypedDict):
    type: Literal["rdp_certificate"]
    presented_sha256: str  # what the local RDP listener presented, lower-case hex; "" if it could not tell
    detail: str


class Shutdown(TypedDict):
    type: Literal["shutdown"]
    reason: str


class Error(TypedDict):
    type: Literal["error"]
    code: int
    message: str


ServerMessage = Union[Challenge, Welcome, HeartbeatAck, Command, IssuedCertificate, CertificateRefused, Error]
AgentMessage = Union[Hello, Heartbeat, Result, CertificateRequest, RdpCertificateRequest, RdpCertificateReport,
                     Shutdown]
Message = Union[ServerMessage, AgentMessage]


# --- Field validators ---------------------------------------------------------------------------
# Each takes the raw value and the field's path (for the error) and returns the clean value.

Validator = Callable[[Any, str], Any]


def _text(max_length: int, *, min_length: int = 0, pattern: re.Pattern[str] | None = None) -> Validator:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise ProtocolError(f"{path} must be a string")
        if not min_length <= len(value) <= max_length:
            raise ProtocolError(f"{path} must be {min_length}-{max_length} characters long")
        # fullmatch: a pattern's ``$`` also matches before a final newline, which no field may end with.
        if pattern is not None and not pattern.fullmatch(value):
            raise ProtocolError(f"{path} has characters that are not allowed")
        return value

    return check


def _integer(minimum: int, maximum: int) -> Validator:
    def check(value: Any, path: str) -> int:
        # bool is an int in Python; JSON true is not a number here.
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolError(f"{path} must be an integer")
        if not minimum <= value <= maximum:
            raise ProtocolError(f"{path} must be between {minimum} and {maximum}")
        return value

    return check


def _number(minimum: float, maximum: float) -> Validator:
    def check(value: Any, path: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            raise ProtocolError(f"{path} must be a number")
        if not minimum <= value <= maximum:
            raise ProtocolError(f"{path} must be between {minimum} and {maximum}")
        return float(value)

    return check


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{path} must be true or false")
    return value


def _choice(*values: str) -> Validator:
    def check(value: Any, path: str) -> str:
        if value not in values:
            raise ProtocolError(f"{path} must be one of {', '.join(values)}")
        return value

    return check


def _base64url(length: int) -> Validator:
    def check(value: Any, path: str) -> str:
        raw = decode_base64url(_text(4 * length, min_length=1)(value, path), path)
        if len(raw) != length:
            raise ProtocolError(f"{path} must encode {length} bytes")
        return value

    return check


def _pem(label: str, max_length: int = 8192) -> Validator:
    marker = f"-----BEGIN {label}-----"

    def check(value: Any, path: str) -> str:
        text = _text(max_length, min_length=len(marker))(value, path)
        if not text.lstrip().startswith(marker):
            raise ProtocolError(f"{path} must be a PEM {label.lower()}")
        return text

    return check


def _json_object(max_keys: int) -> Validator:
    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ProtocolError(f"{path} must be an object")
        if len(value) > max_keys:
            raise ProtocolError(f"{path} has more than {max_keys} entries")
        return value

    return check


def _record(fields: dict[str, Validator], optional: dict[str, Validator] | None = None) -> Validator:
    optional = optional or {}

    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ProtocolError(f"{path} must be an object")
        clean: dict[str, Any] = {}
        for name, validator in fields.items():
            if name not in value:
                raise ProtocolError(f"{path}.{name} is missing")
            clean[name] = validator(value[name], f"{path}.{name}")
        for name, validator in optional.items():
            if value.get(name) is not None:
                clean[name] = validator(value[name], f"{path}.{name}")
        return clean

    return check


def _list_of(item: Validator, max_items: int) -> Validator:
    def check(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise ProtocolError(f"{path} must be a list")
        if len(value) > max_items:
            raise ProtocolError(f"{path} has more than {max_items} items")
        return [item(entry, f"{path}[{index}]") for index, entry in enumerate(value)]

    return check


def _sessions(value: Any, path: str) -> list[dict[str, Any]] | str:
    if value == "unsupported":
        return value
    reports = _list_of(_session_report, MAX_SESSIONS)(value, path)
    ids = [report["session_id"] for report in reports]
    if len(set(ids)) != len(ids):
        raise ProtocolError(f"{path} reports the same session_id twice")
    return reports


_u32 = _integer(0, 2**32 - 1)
SHA256_OR_NOTHING = re.compile(r"^(?:[0-9a-f]{64})?$")
_command_id = _text(64, min_length=8, pattern=COMMAND_ID)
_agent_version = _text(50, min_length=1)
_session_report = _record(
    {"session_id": _u32, "username": _text(150, min_length=1, pattern=USERNAME),
     "state": _choice(*SESSION_STATES)},
    {"started_at": _number(0, 2**33)},
)
_health_check = _record(
    {"name": _text(40, min_length=1, pattern=re.compile(r"^[a-z][a-z0-9_.-]*$")), "ok": _boolean,
     "fatal": _boolean, "detail": _text(300)}
)

SERVER_MESSAGES: dict[str, dict[str, Validator]] = {
    "challenge": {"protocol": _integer(1, 1000), "nonce": _base64url(NONCE_BYTES)},
    "welcome": {"session_host_id": _integer(1, 2**63 - 1), "name": _text(253, min_length=1, pattern=HOST_NAME),
                "heartbeat_interval": _integer(1, 3600)},
    "heartbeat_ack": {"seq": _integer(0, 2**53)},
    "command": {"id": _command_id, "command": _text(40, min_length=1, pattern=COMMAND_NAME),
                "args": _json_object(32)},
    "certificate": {"id": _command_id, "certificate": _pem("CERTIFICATE"),
                    "ca_certificate": _pem("CERTIFICATE")},
    "certificate_refused": {"id": _command_id, "message": _text(500)},
    "error": {"code": _integer(1000, 4999), "message": _text(300)},
}

AGENT_MESSAGES: dict[str, dict[str, Validator]] = {
    "hello": {"protocol": _integer(1, 1000), "certificate": _pem("CERTIFICATE"),
              "signature": _text(700, min_length=1), "agent_version": _agent_version},
    "heartbeat": {"seq": _integer(0, 2**53), "agent_version": _agent_version,
                  "checks": _list_of(_health_check, MAX_CHECKS), "sessions": _sessions},
    "result": {"id": _command_id, "status": _choice(*RESULT_STATUSES), "message": _text(500),
               "data": _json_object(32)},
    "csr": {"id": _command_id, "csr": _pem("CERTIFICATE REQUEST")},
    "rdp_csr": {"id": _command_id, "csr": _pem("CERTIFICATE REQUEST")},
    "rdp_certificate": {"presented_sha256": _text(64, pattern=SHA256_OR_NOTHING), "detail": _text(300)},
    "shutdown": {"reason": _text(200)},
}

# Arguments of the commands the server knows how to send; an agent answers any other command
# (or one it does not implement) with an "unsupported" result.
ACTIVITY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RELAY_URL = re.compile(r"^https?://[^\s]{1,480}/hostagent/relay/[0-9a-f-]{36}/$")

COMMAND_ARGS: dict[str, dict[str, Validator]] = {
    # The broker's connect order: dial this gateway instance for this connection (wire/relaylink.py).
    "connect": {"activity_id": _text(36, min_length=36, pattern=ACTIVITY_ID),
                "relay_url": _text(500, min_length=10, pattern=RELAY_URL),
                "host_ticket": _text(2048, min_length=10)},
    "logoff": {"session_id": _u32},
    "disconnect": {"session_id": _u32},
    "message": {"session_id": _u32, "title": _text(100), "text": _text(2000, min_length=1)},
    "renew-certificate": {},
}


# --- Encoding and decoding ----------------------------------------------------------------------


def decode_base64url(text: str, path: str = "value") -> bytes:
    """``text`` as bytes (wire.base64url); a ProtocolError naming the field otherwise."""
    try:
        return base64url.decode(text)
    except base64url.Base64urlError:
        raise ProtocolError(f"{path} is not base64url") from None


def _decode(frame: str | bytes, table: dict[str, dict[str, Validator]], sender: str) -> dict[str, Any]:
    if isinstance(frame, str):
        # A character is at least one byte: the cheap test first, the exact one only when needed.
        if len(frame) > MAX_FRAME_BYTES or len(frame.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame larger than {MAX_FRAME_BYTES} bytes", CLOSE_TOO_BIG)
    elif isinstance(frame, (bytes, bytearray)):
        raise ProtocolError("binary frames are not part of the protocol")
    else:
        raise ProtocolError("frame must be text")
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("frame must be a JSON object")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in table:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r} from the {sender}")
    clean = _record(table[kind])(value, kind)
    clean["type"] = kind
    _serialise(clean)  # what we pass on could be sent again, as it is
    return clean


def _serialise(message: dict[str, Any]) -> str:
    """The frame for a validated message, for frames read and written alike.

    JSON's ``\\ud800`` escapes can spell a lone surrogate, which is not text: no peer can encode it and no
    database stores it. A message holding one is refused, as is one larger than a frame once written our way.
    """
    frame = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    try:
        size = len(frame.encode("utf-8"))
    except UnicodeEncodeError:
        raise ProtocolError("a string holds a lone surrogate (U+D800-U+DFFF), which is not text") from None
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"message larger than {MAX_FRAME_BYTES} bytes", CLOSE_TOO_BIG)
    return frame


def decode_agent_message(frame: str | bytes) -> AgentMessage:
    """Parse and validate a frame the agent sent; raises ProtocolError."""
    return _decode(frame, AGENT_MESSAGES, "agent")  # type: ignore[return-value]


def decode_server_message(frame: str | bytes) -> ServerMessage:
    """Parse and validate a frame the server sent; raises ProtocolError."""
    return _decode(frame, SERVER_MESSAGES, "server")  # type: ignore[return-value]


def encode(message: Message) -> str:
    """Validate and serialise a message, so no producer can put a malformed frame on the wire."""
    kind = message.get("type")
    table = SERVER_MESSAGES if kind in SERVER_MESSAGES else AGENT_MESSAGES
    if kind not in table:
        raise ProtocolError(f"unknown message type {kind!r}")
    clean = _record(table[kind])(message, str(kind))
    clean["type"] = kind
    return _serialise(clean)


def validate_command_args(command: str, args: dict[str, Any]) -> dict[str, Any]:
    """Check a known command's arguments (raises ProtocolError); unknown commands pass through."""
    spec = COMMAND_ARGS.get(command)
    if spec is None:
        return dict(args)
    return _record(spec)(args, f"{command} args")


# --- Constructors, so producers never hand-build dicts ------------------------------------------


def challenge(nonce: bytes) -> Challenge:
    return {"type": "challenge", "protocol": PROTOCOL_VERSION, "nonce": base64url.encode(nonce)}


def hello(certificate_pem: str, signature: bytes, agent_version: str) -> Hello:
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "certificate": certificate_pem,
            "signature": base64url.encode(signature), "agent_version": agent_version}


def welcome(session_host_id: int, name: str, heartbeat_interval: int) -> Welcome:
    return {"type": "welcome", "session_host_id": session_host_id, "name": name,
            "heartbeat_interval": heartbeat_interval}


def heartbeat(seq: int, agent_version: str, checks: list[HealthCheck],
              sessions: list[SessionReport] | Literal["unsupported"]) -> Heartbeat:
    return {"type": "heartbeat", "seq": seq, "agent_version": agent_version, "checks": checks,
            "sessions": sessions}


def heartbeat_ack(seq: int) -> HeartbeatAck:
    return {"type": "heartbeat_ack", "seq": seq}


def command(command_id: str, name: str, args: dict[str, Any]) -> Command:
    return {"type": "command", "id": command_id, "command": name, "args": args}


def result(command_id: str, status: str, message: str = "", data: dict[str, Any] | None = None) -> Result:
    return {"type": "result", "id": command_id, "status": status,  # type: ignore[typeddict-item]
            "message": message[:500], "data": data or {}}


def certificate_request(command_id: str, csr_pem: str) -> CertificateRequest:
    return {"type": "csr", "id": command_id, "csr": csr_pem}


def issued_certificate(command_id: str, certificate_pem: str, ca_certificate_pem: str) -> IssuedCertificate:
    return {"type": "certificate", "id": command_id, "certificate": certificate_pem,
            "ca_certificate": ca_certificate_pem}


def certificate_refused(command_id: str, message: str) -> CertificateRefused:
    return {"type": "certificate_refused", "id": command_id, "message": message[:500]}


def rdp_certificate_request(request_id: str, csr_pem: str) -> RdpCertificateRequest:
    return {"type": "rdp_csr", "id": request_id, "csr": csr_pem}


def rdp_certificate_report(presented_sha256: str, detail: str) -> RdpCertificateReport:
    return {"type": "rdp_certificate", "presented_sha256": presented_sha256, "detail": detail[:300]}


def shutdown(reason: str) -> Shutdown:
    return {"type": "shutdown", "reason": reason[:200]}


def error(code: int, message: str) -> Error:
    return {"type": "error", "code": code, "message": message[:300]}
