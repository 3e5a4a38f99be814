"""The seed corpus: real messages of each format, from the published MS-TSGU vectors (PROTOCOLS.md §4.4,
``tests/gateway/vectors.py``), FreeRDP's captured request heads and frames, and what our own constructors
send. The fuzzers start from these; the fast suite replays them through the harnesses.

``python -m tests.fuzz.seeds`` writes them to ``corpus/<harness>/<name>``; ``test_corpus.py`` checks the
committed files are what this makes. An input a fuzzer found a bug with goes in ``REGRESSIONS`` beside the
fix, so every run replays it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from uuid import UUID

from gateway import rdg
from tests.gateway import vectors as v
from tests.gateway.test_httpupgrade import FREERDP_UPGRADE, LEGACY_IN_CHUNKED, LEGACY_OUT
from tests.gateway.test_wsframing import BINARY, CLOSE, CONT, PING, TEXT, client_frame
from tests.wire import test_rdcleanpath as rcp_vectors
from wire import hostchannel, rdcleanpath, relaylink, x224

CORPUS = Path(__file__).resolve().parent / "corpus"
ACTIVITY = str(UUID("5f0c3a0e-8d1b-4c4e-9a63-0d6a1c2b9e71"))
# Not a certificate anyone issued: the decoders check the PEM label, not the DER inside.
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZnV6egAAAA==\n-----END CERTIFICATE-----\n"
PEM_CSR = PEM_CERTIFICATE.replace("CERTIFICATE", "CERTIFICATE REQUEST")
SETUP = b"".join(v.CLIENT_SETUP)


def _chunked(*packets: bytes) -> bytes:
    return b"".join(b"%X\r\n%s\r\n" % (len(packet), packet) for packet in packets) + b"0\r\n\r\n"


def rdg_seeds() -> dict[str, bytes]:
    vectors = {name.lower(): value for name, value in vars(v).items() if name.isupper() and isinstance(value, bytes)}
    return {
        **vectors,
        "session-to-close": SETUP + v.DATA_ABC + v.KEEPALIVE + rdg.build_data(b"close") + v.CLOSE_CHANNEL_RESPONSE,
        "session-client-closes": SETUP + v.DATA_ABC + v.CLOSE_CHANNEL,
        "session-refused-token": v.HANDSHAKE_REQUEST + rdg.build_tunnel_create("refuse"),
        "session-refused-port": v.HANDSHAKE_REQUEST + v.TUNNEL_CREATE + v.TUNNEL_AUTH
        + rdg.build_channel_create(["host-1", "host-2"], 0, alt_resources=["alt"]),
        "tunnel-create-reauth": rdg.build_tunnel_create("TESTTOKEN123", reauth_tunnel_context=0x0102030405060708),
        "tunnel-create-no-cookie": rdg.build_tunnel_create(None),
        "handshake-ntlm-only": rdg.build_handshake_request(rdg.ExtendedAuth.SSPI_NTLM),
        "channel-create-not-rdp": rdg.build_channel_create(["127.0.0.1"], 3389, protocol=1),
        "data-empty": rdg.build_data(b""),
    }


def gateway_http_seeds() -> dict[str, bytes]:
    packet = v.HANDSHAKE_REQUEST
    return {
        "freerdp2-websocket-upgrade": FREERDP_UPGRADE,
        "legacy-out": LEGACY_OUT,
        "legacy-in-chunked": LEGACY_IN_CHUNKED,
        "standard-websocket-get": b"GET /remoteDesktopGateway/?x=1 HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "chunked-setup": _chunked(*v.CLIENT_SETUP),
        "chunked-lower-hex-extension": b"e;ext=1\r\n" + packet + b"\r\n0\r\n\r\n",
        "frame-setup": b"".join(client_frame(packet) for packet in v.CLIENT_SETUP),
        "frame-fragmented": client_frame(SETUP[:20], fin=False) + client_frame(SETUP[20:], opcode=CONT),
        "frame-ping-close": client_frame(b"hi", opcode=PING) + client_frame(b"\x03\xe8", opcode=CLOSE),
        "frame-text": client_frame(b"text", opcode=TEXT),
        "frame-unmasked": client_frame(v.DATA_ABC, key=None),
        "frame-16-bit-length": client_frame(bytes(300), opcode=BINARY),
    }


def relaylink_seeds() -> dict[str, bytes]:
    ticket = "wht1.eyJhIjoxfQ.c2ln"
    return {
        "challenge": relaylink.challenge(bytes(range(32))),
        "hello": relaylink.hello(PEM_CERTIFICATE, bytes(range(64)), ticket),
        "fail": relaylink.fail("rdp_unreachable", "connection refused", ticket),
        "ready": relaylink.ready(),
        "refused": relaylink.refused("the ticket expired"),
        "response-101": relaylink.switching_protocols(),
        "response-403": b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n",
        "url-https": f"https://gw.example:8443{relaylink.relay_path(ACTIVITY)}".encode(),
        "url-ipv6": f"http://[::1]{relaylink.relay_path(ACTIVITY)}".encode(),
        "upgrade-request": relaylink.upgrade_request("gw.example", 443, relaylink.relay_path(ACTIVITY)),
    }


def hostchannel_seeds() -> dict[str, bytes]:
    h = hostchannel
    messages = {
        "challenge": h.challenge(bytes(range(h.NONCE_BYTES))),
        "hello": h.hello(PEM_CERTIFICATE, bytes(range(64)), "1.4.0"),
        "welcome": h.welcome(42, "host-1.example", 30),
        "heartbeat": h.heartbeat(7, "1.4.0", [
            {"name": "rdp.listener", "ok": True, "fatal": True, "detail": "listening on 3389"},
            {"name": "disk", "ok": False, "fatal": False, "detail": "92% full"},
        ], [
            {"session_id": 2, "username": "CONTOSO\\alice", "state": "active", "started_at": 1767225600.5},
            {"session_id": 3, "username": "bob", "state": "disconnected"},
        ]),
        "heartbeat-unsupported": h.heartbeat(8, "1.4.0", [], "unsupported"),
        "heartbeat-ack": h.heartbeat_ack(7),
        "command-connect": h.command("cmd-0123456789", "connect", {
            "activity_id": ACTIVITY, "relay_url": f"https://gw.example:8443{relaylink.relay_path(ACTIVITY)}",
            "host_ticket": "wht1.eyJhIjoxfQ.c2ln"}),
        "command-message": h.command("cmd-abcdefghij", "message", {"session_id": 2, "title": "Hi", "text": "Hello"}),
        "result": h.result("cmd-0123456789", "ok", "done", {"session_id": 2}),
        "csr": h.certificate_request("cmd-renew-0001", PEM_CSR),
        "certificate": h.issued_certificate("cmd-renew-0001", PEM_CERTIFICATE, PEM_CERTIFICATE),
        "certificate-refused": h.certificate_refused("cmd-renew-0001", "not now"),
        "shutdown": h.shutdown("service stopping"),
        "error": h.error(h.CLOSE_AUTH_FAILED, "authentication was refused"),
    }
    seeds = {name: h.encode(message).encode() for name, message in messages.items()}
    seeds["spaced-json"] = json.dumps(messages["heartbeat-ack"], indent=2).encode()
    return seeds


def rdcleanpath_seeds() -> dict[str, bytes]:
    """IronRDP's vectors (tests/wire/test_rdcleanpath.py) and a request as the browser sends it."""
    browser = rdcleanpath.encode_request(
        destination="pool-a", proxy_auth="wct1.eyJqIjoiYWJjZGVmZ2hpamtsbW5vcHEifQ." + "s" * 43,
        x224_connection_request=x224.connection_request(x224.PROTOCOL_SSL | x224.PROTOCOL_HYBRID, cookie="alice"))
    return {
        "ironrdp-request": rcp_vectors.REQUEST_DER,
        "ironrdp-response": rcp_vectors.RESPONSE_SUCCESS_DER,
        "ironrdp-http-error": rcp_vectors.RESPONSE_HTTP_ERROR_DER,
        "ironrdp-tls-error": rcp_vectors.RESPONSE_TLS_ERROR_DER,
        "browser-request": browser,
        "negotiation-error": rdcleanpath.encode_error(error_code=2, http_status_code=502,
                                                      x224_connection_confirm=b"\x03\x00\x00\x13"),
    }


# Inputs with which a fuzzer found a bug (fixed since, each with a test beside its parser's): harness ->
# name -> bytes.
REGRESSIONS: dict[str, dict[str, bytes]] = {
    "hostchannel": {
        # A pattern's "$" matched before a final newline (tests/wire/test_hostchannel.py).
        "id-ending-in-newline": b'{"id":"cmd-reneu--\\n","certificate":"-----BEGIN CERTIFICATE-----CAwIB-\\n",'
                                b'"ca_certificate":"-----BEGIN CERTIFICATE-----\\n---\\n","type":"certificate"}',
        # A lone surrogate spelled as a JSON escape passed, and could be neither sent again nor stored.
        "lone-surrogate": b'{"seq":7,"agent_version":"1.4.0","checks":[],"sessions":[{"session_id":4,'
                          b'"username":"CON\\ud800TOSO","state":"active"}],"type":"heartbeat"}',
    },
    "relaylink": {
        # split_url took a host upgrade_request could not encode (tests/wire/test_relaylink.py).
        "url-non-ascii-host": b"https://gw.exampl\xa1:8443/hostagent/relay/5f0c3a0e-8d1b-4c4e-9a63-0d6a1c2b9e71/",
        # str.isdigit() took a latin-1 superscript, then int() raised ValueError.
        "response-superscript-status": b"HTTP/1.1 40\xb3 Forbidden\r\nContent-Length: 1\xb2\r\n\r\n",
    },
    "rdcleanpath": {
        # asn1crypto (tried before wire/rdcleanpath.py's own DER) raised AttributeError: IronRDP's success
        # response with [6]'s tag changed to a universal constructed one (tests/wire/test_rdcleanpath.py).
        "universal-tag-in-a-field-slot": b"\x30\x34\xa0\x04\x02\x02\x0d\x3e\x32" + bytes.fromhex(
            "060404deadbeffa71430120404deadbeff0404deadbeff0404deadbeffa90e0c0c3139322e3136382e372e3935"),
    },
    "gateway_http": {
        # A 64-character chunk-size line fed up to its CR was refused; fed at once, it decoded
        # (tests/gateway/test_httpupgrade.py). 88 bytes: the harness feeds it byte by byte too.
        "chunk-size-line-split-before-lf": b"e;ext" + b"\x03" * 57 + b"=1\r\n" + v.HANDSHAKE_REQUEST
        + b"\r\n1\r\nx\r\n",
    },
}


def seeds() -> dict[str, dict[str, bytes]]:
    """Every harness's seeds: harness name -> seed name -> bytes."""
    made = {"rdg": rdg_seeds(), "gateway_http": gateway_http_seeds(), "relaylink": relaylink_seeds(),
            "hostchannel": hostchannel_seeds(), "rdcleanpath": rdcleanpath_seeds()}
    for harness, inputs in REGRESSIONS.items():
        made[harness].update({f"regression-{name}": data for name, data in inputs.items()})
    return made


def write(root: Path = CORPUS) -> None:
    for harness, inputs in seeds().items():
        directory = root / harness
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in inputs.items():
            (directory / name).write_bytes(data)


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS)
