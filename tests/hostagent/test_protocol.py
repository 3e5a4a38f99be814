"""The wire protocol: every message type round-trips, and every kind of bad frame is refused."""
from __future__ import annotations

import json

import pytest

from hostagent import protocol

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
COMMAND_ID = "c0mmand-1d"

SERVER_MESSAGES = {
    "challenge": protocol.challenge(b"\x01" * protocol.NONCE_BYTES),
    "welcome": protocol.welcome(7, "host-a.example.net", 30),
    "heartbeat_ack": protocol.heartbeat_ack(12),
    "command": protocol.command(COMMAND_ID, "logoff", {"session_id": 4}),
    "certificate": protocol.issued_certificate(COMMAND_ID, CERT, CERT),
    "certificate_refused": protocol.certificate_refused(COMMAND_ID, "The CSR names another host."),
    "error": protocol.error(protocol.CLOSE_AUTH_FAILED, "The certificate has been revoked."),
}
AGENT_MESSAGES = {
    "hello": protocol.hello(CERT, b"signature", "1.0.0"),
    "heartbeat": protocol.heartbeat(
        3, "1.0.0",
        [{"name": "rdp_listener", "ok": True, "fatal": True, "detail": "127.0.0.1:3389 accepts connections"}],
        [{"session_id": 4242, "username": "member", "state": "active", "started_at": 1700000000.0}],
    ),
    "result": protocol.result(COMMAND_ID, "unsupported", "Not on this OS."),
    "csr": protocol.certificate_request(COMMAND_ID, CSR),
    "shutdown": protocol.shutdown("agent stopped (received SIGTERM)"),
}


def test_every_message_type_has_an_example_here():
    assert set(SERVER_MESSAGES) == set(protocol.SERVER_MESSAGES)
    assert set(AGENT_MESSAGES) == set(protocol.AGENT_MESSAGES)


@pytest.mark.parametrize("kind", sorted(SERVER_MESSAGES))
def test_server_messages_round_trip(kind):
    message = SERVER_MESSAGES[kind]
    assert protocol.decode_server_message(protocol.encode(message)) == message


@pytest.mark.parametrize("kind", sorted(AGENT_MESSAGES))
def test_agent_messages_round_trip(kind):
    message = AGENT_MESSAGES[kind]
    assert protocol.decode_agent_message(protocol.encode(message)) == message


def test_a_heartbeat_may_say_sessions_are_unsupported():
    message = protocol.heartbeat(0, "1.0.0", [], "unsupported")
    assert protocol.decode_agent_message(protocol.encode(message))["sessions"] == "unsupported"


@pytest.mark.parametrize("kind", sorted(AGENT_MESSAGES))
def test_it_refuses_an_agent_message_missing_any_field(kind):
    message = AGENT_MESSAGES[kind]
    for field in message:
        if field == "type":
            continue
        broken = {key: value for key, value in message.items() if key != field}
        with pytest.raises(protocol.ProtocolError, match=f"{field} is missing") as caught:
            protocol.decode_agent_message(json.dumps(broken))
        assert caught.value.close_code == protocol.CLOSE_PROTOCOL_ERROR


@pytest.mark.parametrize("kind", sorted(SERVER_MESSAGES))
def test_it_refuses_a_server_message_missing_any_field(kind):
    message = SERVER_MESSAGES[kind]
    for field in message:
        if field == "type":
            continue
        broken = {key: value for key, value in message.items() if key != field}
        with pytest.raises(protocol.ProtocolError, match=f"{field} is missing"):
            protocol.decode_server_message(json.dumps(broken))


def test_it_refuses_an_unknown_type():
    with pytest.raises(protocol.ProtocolError, match="unknown message type 'reboot'"):
        protocol.decode_agent_message('{"type": "reboot"}')


def test_it_refuses_a_message_without_a_type():
    with pytest.raises(protocol.ProtocolError, match="unknown message type"):
        protocol.decode_agent_message('{"seq": 1}')


def test_messages_only_travel_in_their_own_direction():
    # An agent cannot send the server a command, nor the server an agent's hello.
    with pytest.raises(protocol.ProtocolError, match="unknown message type 'command'"):
        protocol.decode_agent_message(protocol.encode(SERVER_MESSAGES["command"]))
    with pytest.raises(protocol.ProtocolError, match="unknown message type 'hello'"):
        protocol.decode_server_message(protocol.encode(AGENT_MESSAGES["hello"]))


def test_it_refuses_an_oversized_frame_with_the_too_big_code():
    frame = json.dumps({"type": "shutdown", "reason": "x" * protocol.MAX_FRAME_BYTES})
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_agent_message(frame)
    assert caught.value.close_code == protocol.CLOSE_TOO_BIG


def test_the_size_limit_counts_bytes_not_characters():
    # 30,000 three-byte characters: under the limit as characters, over it as UTF-8.
    frame = json.dumps({"type": "shutdown", "reason": "€" * 30_000}, ensure_ascii=False)
    assert len(frame) < protocol.MAX_FRAME_BYTES < len(frame.encode())
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_agent_message(frame)
    assert caught.value.close_code == protocol.CLOSE_TOO_BIG


def test_it_will_not_encode_an_oversized_message():
    # Every field within its own bounds, the whole over the frame limit.
    sessions = [{"session_id": n, "username": "€" * 150, "state": "active"} for n in range(protocol.MAX_SESSIONS)]
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.encode(protocol.heartbeat(1, "1.0.0", [], sessions))
    assert caught.value.close_code == protocol.CLOSE_TOO_BIG


@pytest.mark.parametrize("frame", [
    "not json", "[1, 2]", '"text"', "{" * 50_000, b'{"type": "shutdown", "reason": ""}',
])
def test_it_refuses_frames_that_are_not_a_json_object_in_text(frame):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_agent_message(frame)


@pytest.mark.parametrize("field, value, complaint", [
    ("seq", "1", "seq must be an integer"),
    ("seq", True, "seq must be an integer"),
    ("seq", -1, "seq must be between"),
    ("agent_version", "", "agent_version must be 1-50"),
    ("checks", {}, "checks must be a list"),
    ("checks", [{"name": "disk", "ok": "yes", "fatal": False, "detail": ""}], r"checks\[0\].ok must be true or false"),
    ("checks", [{"name": "x", "ok": True, "fatal": False, "detail": ""}] * (protocol.MAX_CHECKS + 1), "more than"),
    ("sessions", "none", "sessions must be a list"),
    ("sessions", [{"session_id": 1, "username": "a", "state": "gone"}], "state must be one of"),
    ("sessions", [{"session_id": 1, "username": "a\nb", "state": "active"}], "characters that are not allowed"),
    ("sessions", [{"session_id": 1, "username": "a", "state": "active"}] * 2, "same session_id twice"),
])
def test_it_checks_every_heartbeat_field(field, value, complaint):
    message = dict(AGENT_MESSAGES["heartbeat"], **{field: value})
    with pytest.raises(protocol.ProtocolError, match=complaint):
        protocol.decode_agent_message(json.dumps(message))


def test_it_refuses_a_result_status_the_agent_may_not_claim():
    message = dict(AGENT_MESSAGES["result"], status="timeout")
    with pytest.raises(protocol.ProtocolError, match="status must be one of"):
        protocol.decode_agent_message(json.dumps(message))


def test_it_refuses_a_challenge_nonce_of_the_wrong_length():
    message = dict(SERVER_MESSAGES["challenge"], nonce=protocol.encode_base64url(b"short"))
    with pytest.raises(protocol.ProtocolError, match="must encode 32 bytes"):
        protocol.decode_server_message(json.dumps(message))


def test_it_refuses_a_hello_whose_certificate_is_not_pem():
    message = dict(AGENT_MESSAGES["hello"], certificate="MIIB" + "x" * 100)
    with pytest.raises(protocol.ProtocolError, match="must be a PEM certificate"):
        protocol.decode_agent_message(json.dumps(message))


def test_unknown_extra_fields_are_dropped_not_passed_on():
    message = dict(AGENT_MESSAGES["shutdown"], reboot_in=5)
    assert protocol.decode_agent_message(json.dumps(message)) == AGENT_MESSAGES["shutdown"]


def test_known_command_arguments_are_checked():
    assert protocol.validate_command_args("message", {"session_id": 3, "title": "Hi", "text": "Back soon"}) == {
        "session_id": 3, "title": "Hi", "text": "Back soon"}
    with pytest.raises(protocol.ProtocolError, match="session_id is missing"):
        protocol.validate_command_args("logoff", {})
    with pytest.raises(protocol.ProtocolError, match="text must be 1-2000"):
        protocol.validate_command_args("message", {"session_id": 3, "title": "", "text": ""})


def test_unknown_commands_pass_through_for_the_agent_to_answer():
    assert protocol.validate_command_args("screenshot", {"scale": "x"}) == {"scale": "x"}


def test_a_connect_order_names_a_connection_a_relay_url_and_a_ticket():
    args = {"activity_id": "3a183cce-c2c3-433f-aed1-6afd4dbe50c7",
            "relay_url": "https://gw-1.example.net:8443/hostagent/relay/3a183cce-c2c3-433f-aed1-6afd4dbe50c7/",
            "host_ticket": "wht1.payload.signature"}
    assert protocol.validate_command_args("connect", args) == args
    with pytest.raises(protocol.ProtocolError):
        protocol.validate_command_args("connect", {**args, "relay_url": "https://gw-1.example.net/"})
    with pytest.raises(protocol.ProtocolError):  # the web server's WebSocket is not where agents relay
        protocol.validate_command_args(
            "connect", {**args, "relay_url": "wss://gw-1.example.net/ws/relay/3a183cce-c2c3-433f-aed1-6afd4dbe50c7/"})
