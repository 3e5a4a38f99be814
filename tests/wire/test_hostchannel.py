"""The wire protocol: every message type round-trips, and every kind of bad frame is refused."""
from __future__ import annotations

import json

import pytest

from wire import base64url, hostchannel

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
COMMAND_ID = "c0mmand-1d"

SERVER_MESSAGES = {
    "challenge": hostchannel.challenge(b"\x01" * hostchannel.NONCE_BYTES),
    "welcome": hostchannel.welcome(7, "host-a.example.net", 30),
    "heartbeat_ack": hostchannel.heartbeat_ack(12),
    "command": hostchannel.command(COMMAND_ID, "logoff", {"session_id": 4}),
    "certificate": hostchannel.issued_certificate(COMMAND_ID, CERT, CERT),
    "certificate_refused": hostchannel.certificate_refused(COMMAND_ID, "The CSR names another host."),
    "error": hostchannel.error(hostchannel.CLOSE_AUTH_FAILED, "The certificate has been revoked."),
}
AGENT_MESSAGES = {
    "hello": hostchannel.hello(CERT, b"signature", "1.0.0"),
    "heartbeat": hostchannel.heartbeat(
        3, "1.0.0",
        [{"name": "rdp_listener", "ok": True, "fatal": True, "detail": "127.0.0.1:3389 accepts connections"}],
        [{"session_id": 4242, "username": "member", "state": "active", "started_at": 1700000000.0}],
    ),
    "result": hostchannel.result(COMMAND_ID, "unsupported", "Not on this OS."),
    "csr": hostchannel.certificate_request(COMMAND_ID, CSR),
    "rdp_csr": hostchannel.rdp_certificate_request(COMMAND_ID, CSR),
    "rdp_certificate": hostchannel.rdp_certificate_report("0f" * 32, "Presented by 127.0.0.1:3389."),
    "shutdown": hostchannel.shutdown("agent stopped (received SIGTERM)"),
}


def test_every_message_type_has_an_example_here():
    assert set(SERVER_MESSAGES) == set(hostchannel.SERVER_MESSAGES)
    assert set(AGENT_MESSAGES) == set(hostchannel.AGENT_MESSAGES)


@pytest.mark.parametrize("kind", sorted(SERVER_MESSAGES))
def test_server_messages_round_trip(kind):
    message = SERVER_MESSAGES[kind]
    assert hostchannel.decode_server_message(hostchannel.encode(message)) == message


@pytest.mark.parametrize("kind", sorted(AGENT_MESSAGES))
def test_agent_messages_round_trip(kind):
    message = AGENT_MESSAGES[kind]
    assert hostchannel.decode_agent_message(hostchannel.encode(message)) == message


def test_a_heartbeat_may_say_sessions_are_unsupported():
    message = hostchannel.heartbeat(0, "1.0.0", [], "unsupported")
    assert hostchannel.decode_agent_message(hostchannel.encode(message))["sessions"] == "unsupported"


@pytest.mark.parametrize("kind", sorted(AGENT_MESSAGES))
def test_it_refuses_an_agent_message_missing_any_field(kind):
    message = AGENT_MESSAGES[kind]
    for field in message:
        if field == "type":
            continue
        broken = {key: value for key, value in message.items() if key != field}
        with pytest.raises(hostchannel.ProtocolError, match=f"{field} is missing") as caught:
            hostchannel.decode_agent_message(json.dumps(broken))
        assert caught.value.close_code == hostchannel.CLOSE_PROTOCOL_ERROR


@pytest.mark.parametrize("kind", sorted(SERVER_MESSAGES))
def test_it_refuses_a_server_message_missing_any_field(kind):
    message = SERVER_MESSAGES[kind]
    for field in message:
        if field == "type":
            continue
        broken = {key: value for key, value in message.items() if key != field}
        with pytest.raises(hostchannel.ProtocolError, match=f"{field} is missing"):
            hostchannel.decode_server_message(json.dumps(broken))


def test_it_refuses_an_unknown_type():
    with pytest.raises(hostchannel.ProtocolError, match="unknown message type 'reboot'"):
        hostchannel.decode_agent_message('{"type": "reboot"}')


def test_it_refuses_a_message_without_a_type():
    with pytest.raises(hostchannel.ProtocolError, match="unknown message type"):
        hostchannel.decode_agent_message('{"seq": 1}')


def test_messages_only_travel_in_their_own_direction():
    # An agent cannot send the server a command, nor the server an agent's hello.
    with pytest.raises(hostchannel.ProtocolError, match="unknown message type 'command'"):
        hostchannel.decode_agent_message(hostchannel.encode(SERVER_MESSAGES["command"]))
    with pytest.raises(hostchannel.ProtocolError, match="unknown message type 'hello'"):
        hostchannel.decode_server_message(hostchannel.encode(AGENT_MESSAGES["hello"]))


def test_it_refuses_an_oversized_frame_with_the_too_big_code():
    frame = json.dumps({"type": "shutdown", "reason": "x" * hostchannel.MAX_FRAME_BYTES})
    with pytest.raises(hostchannel.ProtocolError) as caught:
        hostchannel.decode_agent_message(frame)
    assert caught.value.close_code == hostchannel.CLOSE_TOO_BIG


def test_the_size_limit_counts_bytes_not_characters():
    # 30,000 three-byte characters: under the limit as characters, over it as UTF-8.
    frame = json.dumps({"type": "shutdown", "reason": "€" * 30_000}, ensure_ascii=False)
    assert len(frame) < hostchannel.MAX_FRAME_BYTES < len(frame.encode())
    with pytest.raises(hostchannel.ProtocolError) as caught:
        hostchannel.decode_agent_message(frame)
    assert caught.value.close_code == hostchannel.CLOSE_TOO_BIG


def test_it_will_not_encode_an_oversized_message():
    # Every field within its own bounds, the whole over the frame limit.
    sessions = [{"session_id": n, "username": "€" * 150, "state": "active"} for n in range(hostchannel.MAX_SESSIONS)]
    with pytest.raises(hostchannel.ProtocolError) as caught:
        hostchannel.encode(hostchannel.heartbeat(1, "1.0.0", [], sessions))
    assert caught.value.close_code == hostchannel.CLOSE_TOO_BIG


@pytest.mark.parametrize("frame", [
    "not json", "[1, 2]", '"text"', "{" * 50_000, b'{"type": "shutdown", "reason": ""}',
])
def test_it_refuses_frames_that_are_not_a_json_object_in_text(frame):
    with pytest.raises(hostchannel.ProtocolError):
        hostchannel.decode_agent_message(frame)


@pytest.mark.parametrize("field, value, complaint", [
    ("seq", "1", "seq must be an integer"),
    ("seq", True, "seq must be an integer"),
    ("seq", -1, "seq must be between"),
    ("agent_version", "", "agent_version must be 1-50"),
    ("checks", {}, "checks must be a list"),
    ("checks", [{"name": "disk", "ok": "yes", "fatal": False, "detail": ""}], r"checks\[0\].ok must be true or false"),
    ("checks", [{"name": "x", "ok": True, "fatal": False, "detail": ""}] * (hostchannel.MAX_CHECKS + 1), "more than"),
    ("sessions", "none", "sessions must be a list"),
    ("sessions", [{"session_id": 1, "username": "a", "state": "gone"}], "state must be one of"),
    ("sessions", [{"session_id": 1, "username": "a\nb", "state": "active"}], "characters that are not allowed"),
    ("sessions", [{"session_id": 1, "username": "a", "state": "active"}] * 2, "same session_id twice"),
])
def test_it_checks_every_heartbeat_field(field, value, complaint):
    message = dict(AGENT_MESSAGES["heartbeat"], **{field: value})
    with pytest.raises(hostchannel.ProtocolError, match=complaint):
        hostchannel.decode_agent_message(json.dumps(message))


def test_it_refuses_a_result_status_the_agent_may_not_claim():
    message = dict(AGENT_MESSAGES["result"], status="timeout")
    with pytest.raises(hostchannel.ProtocolError, match="status must be one of"):
        hostchannel.decode_agent_message(json.dumps(message))


def test_it_refuses_a_challenge_nonce_of_the_wrong_length():
    message = dict(SERVER_MESSAGES["challenge"], nonce=base64url.encode(b"short"))
    with pytest.raises(hostchannel.ProtocolError, match="must encode 32 bytes"):
        hostchannel.decode_server_message(json.dumps(message))


def test_it_refuses_a_hello_whose_certificate_is_not_pem():
    message = dict(AGENT_MESSAGES["hello"], certificate="MIIB" + "x" * 100)
    with pytest.raises(hostchannel.ProtocolError, match="must be a PEM certificate"):
        hostchannel.decode_agent_message(json.dumps(message))


def test_unknown_extra_fields_are_dropped_not_passed_on():
    message = dict(AGENT_MESSAGES["shutdown"], reboot_in=5)
    assert hostchannel.decode_agent_message(json.dumps(message)) == AGENT_MESSAGES["shutdown"]


def test_known_command_arguments_are_checked():
    assert hostchannel.validate_command_args("message", {"session_id": 3, "title": "Hi", "text": "Back soon"}) == {
        "session_id": 3, "title": "Hi", "text": "Back soon"}
    with pytest.raises(hostchannel.ProtocolError, match="session_id is missing"):
        hostchannel.validate_command_args("logoff", {})
    with pytest.raises(hostchannel.ProtocolError, match="text must be 1-2000"):
        hostchannel.validate_command_args("message", {"session_id": 3, "title": "", "text": ""})


def test_unknown_commands_pass_through_for_the_agent_to_answer():
    assert hostchannel.validate_command_args("screenshot", {"scale": "x"}) == {"scale": "x"}


def test_a_connect_order_names_a_connection_a_relay_url_and_a_ticket():
    args = {"activity_id": "3a183cce-c2c3-433f-aed1-6afd4dbe50c7",
            "relay_url": "https://gw-1.example.net:8443/hostagent/relay/3a183cce-c2c3-433f-aed1-6afd4dbe50c7/",
            "host_ticket": "wht1.payload.signature"}
    assert hostchannel.validate_command_args("connect", args) == args
    with pytest.raises(hostchannel.ProtocolError):
        hostchannel.validate_command_args("connect", {**args, "relay_url": "https://gw-1.example.net/"})
    with pytest.raises(hostchannel.ProtocolError):  # the web server's WebSocket is not where agents relay
        hostchannel.validate_command_args(
            "connect", {**args, "relay_url": "wss://gw-1.example.net/ws/relay/3a183cce-c2c3-433f-aed1-6afd4dbe50c7/"})


@pytest.mark.parametrize("message, decode", [
    (dict(SERVER_MESSAGES["certificate"], id=COMMAND_ID + "\n"), hostchannel.decode_server_message),
    (dict(SERVER_MESSAGES["command"], command="logoff\n"), hostchannel.decode_server_message),
    (dict(SERVER_MESSAGES["welcome"], name="host-a.example.net\n"), hostchannel.decode_server_message),
    (dict(AGENT_MESSAGES["result"], id=COMMAND_ID + "\n"), hostchannel.decode_agent_message),
    (dict(AGENT_MESSAGES["heartbeat"], sessions=[{"session_id": 1, "username": "member\n", "state": "active"}]),
     hostchannel.decode_agent_message),
])
def test_a_patterned_field_may_not_end_in_a_newline(message, decode):
    # Found by tests/fuzz/fuzz_hostchannel.py: a regex ``$`` matches before a final "\n" too.
    with pytest.raises(hostchannel.ProtocolError, match="characters that are not allowed"):
        decode(json.dumps(message))


def test_a_connect_order_whose_relay_url_ends_in_a_newline_is_refused():
    url = "https://gw-1.example.net/hostagent/relay/3a183cce-c2c3-433f-aed1-6afd4dbe50c7/\n"
    with pytest.raises(hostchannel.ProtocolError, match="relay_url has characters"):
        hostchannel.validate_command_args("connect", {"activity_id": "3a183cce-c2c3-433f-aed1-6afd4dbe50c7",
                                                      "relay_url": url, "host_ticket": "wht1.payload.signature"})


@pytest.mark.parametrize("message, decode", [
    (dict(AGENT_MESSAGES["heartbeat"], sessions=[{"session_id": 1, "username": "\ud800", "state": "active"}]),
     hostchannel.decode_agent_message),
    (dict(AGENT_MESSAGES["result"], data={"output": ["ok", "\udc00"]}), hostchannel.decode_agent_message),
    (dict(SERVER_MESSAGES["certificate_refused"], message="no \udfff"), hostchannel.decode_server_message),
])
def test_a_lone_surrogate_is_not_text_and_is_refused(message, decode):
    # Found by tests/fuzz/fuzz_hostchannel.py: JSON's "\ud800" escape decoded to a string that could be
    # neither encoded again nor stored (UnicodeEncodeError).
    frame = json.dumps(message)  # ASCII, with the surrogate as a \udXXX escape
    with pytest.raises(hostchannel.ProtocolError, match="lone surrogate"):
        decode(frame)


def test_it_will_not_encode_a_lone_surrogate():
    with pytest.raises(hostchannel.ProtocolError, match="lone surrogate"):
        hostchannel.encode(hostchannel.shutdown("stopping \ud800"))
