"""The agent link's wire format (wire/relaylink.py): pure functions over bytes and strings, shared by
the gateway and the agent, that refuse anything malformed with a LinkError."""
from __future__ import annotations

import pytest

from wire import relaylink

ACTIVITY = "3a183cce-c2c3-433f-aed1-6afd4dbe50c7"


def test_a_relay_url_splits_into_tls_host_port_and_path():
    url = f"https://gw-1.example.net:8443/hostagent/relay/{ACTIVITY}/"
    assert relaylink.split_url(url) == (True, "gw-1.example.net", 8443, f"/hostagent/relay/{ACTIVITY}/")
    assert relaylink.split_url(f"https://[::1]/hostagent/relay/{ACTIVITY}/")[1:3] == ("::1", 443)
    assert relaylink.split_url(f"http://127.0.0.1:9/hostagent/relay/{ACTIVITY}/")[:3] == (False, "127.0.0.1", 9)


@pytest.mark.parametrize("url", [
    f"wss://gw.example.net/ws/relay/{ACTIVITY}/",
    "https://gw.example.net/hostagent/relay/not-an-id/",
    f"https://gw.example.net:99999/hostagent/relay/{ACTIVITY}/",
    f"https:///hostagent/relay/{ACTIVITY}/",
])
def test_other_urls_are_refused(url):
    with pytest.raises(relaylink.LinkError):
        relaylink.split_url(url)


def test_the_activity_id_comes_from_the_path_or_not_at_all():
    assert relaylink.activity_from_path(relaylink.relay_path(ACTIVITY)) == ACTIVITY
    assert relaylink.activity_from_path(f"/hostagent/relay/{ACTIVITY}") == ACTIVITY
    for path in ("/hostagent/relay/", f"/hostagent/relay/{ACTIVITY}/x/", f"/elsewhere/{ACTIVITY}/",
                 f"/hostagent/relay/{ACTIVITY.upper()}/"):
        assert relaylink.activity_from_path(path) is None


def test_the_upgrade_request_and_answer():
    request = relaylink.upgrade_request("::1", 8443, relaylink.relay_path(ACTIVITY))
    assert request.startswith(f"GET /hostagent/relay/{ACTIVITY}/ HTTP/1.1\r\nHost: [::1]:8443\r\n".encode())
    assert b"Upgrade: wvd-agent-link/1\r\n" in request and request.endswith(b"\r\n\r\n")
    assert relaylink.parse_response_head(relaylink.switching_protocols()) == (101, 0)
    error = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
    assert relaylink.parse_response_head(error) == (404, 12)


@pytest.mark.parametrize("head", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 101", b"HTTP/1.0 101 OK\r\n\r\n",
                                  b"HTTP/1.1 1010 x\r\n\r\n", b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 5000 + b"\r\n"])
def test_a_response_that_is_not_http_1_1_is_refused(head):
    with pytest.raises(relaylink.LinkError):
        relaylink.parse_response_head(head)


def test_control_messages_round_trip_as_json_lines():
    assert relaylink.decode(relaylink.challenge(b"\x01" * 32), ("challenge",)) == {"type": "challenge",
                                                                                    "nonce": b"\x01" * 32}
    hello = relaylink.decode(relaylink.hello("PEM", b"sig", "wht1.t"), ("hello",))
    assert hello == {"type": "hello", "certificate": "PEM", "signature": b"sig", "ticket": "wht1.t"}
    assert relaylink.decode(relaylink.ready(), ("ready", "refused")) == {"type": "ready"}
    assert relaylink.decode(relaylink.refused("x" * 400), ("refused",))["reason"] == "x" * 300
    fail = relaylink.decode(relaylink.fail("rdp_unreachable", "d" * 400, "wht1.t"), ("fail",))
    assert fail["detail"] == "d" * 300


@pytest.mark.parametrize("line, message", [
    (b'{"type": "hello"}', "ended in the middle"),
    (b"[1]\n", "JSON object"),
    (b"{no\n", "not JSON"),
    (b'{"type": "ready"}\n', "unexpected control message"),
    (b'{"type": "hello", "certificate": "", "signature": "AA", "ticket": "t"}\n', "certificate"),
    (b'{"type": "challenge", "nonce": "A"}\n', "base64url"),
    (b'{"type": "fail", "reason": "bored", "ticket": "t"}\n', "unknown fail reason"),
    (b"[" * 100_000 + b"\n", "at most 16 KiB"),
    (b"[" * 10_000 + b"\n", "not JSON"),
])
def test_malformed_control_messages_are_refused(line, message):
    with pytest.raises(relaylink.LinkError, match=message):
        relaylink.decode(line, ("hello", "challenge", "fail"))


@pytest.mark.parametrize("host", ["gw.exampl\u00a1", "b\u00fccher.example", "gw example", "gw\x00.example"])
def test_a_relay_url_whose_host_cannot_go_in_a_host_header_is_refused(host):
    # Found by tests/fuzz/fuzz_relaylink.py: split_url took the host, then upgrade_request failed to
    # encode it (UnicodeEncodeError, not a LinkError) once the agent had dialled.
    with pytest.raises(relaylink.LinkError, match="host must be"):
        relaylink.split_url(f"https://{host}:8443/hostagent/relay/{ACTIVITY}/")
    assert relaylink.split_url(f"https://xn--bcher-kva.example/hostagent/relay/{ACTIVITY}/")[1] == \
        "xn--bcher-kva.example"


# The head is read as latin-1, whose superscripts ²³¹ are digits to str.isdigit() but not to int().
@pytest.mark.parametrize("status", ["40\u00b3", "\u00b9\u00b2\u00b3"])
def test_a_status_in_other_digits_than_ascii_is_refused(status):
    # Found by tests/fuzz/fuzz_relaylink.py: str.isdigit() took "40³", then int() raised ValueError.
    with pytest.raises(relaylink.LinkError, match="not an HTTP/1.1 response"):
        relaylink.parse_response_head(f"HTTP/1.1 {status} Forbidden\r\n\r\n".encode("latin-1"))


@pytest.mark.parametrize("value", ["1\u00b2", "9" * 5000, "-1", "12 34"])
def test_a_content_length_that_is_not_a_plain_number_reads_as_none(value):
    head = f"HTTP/1.1 403 Forbidden\r\nContent-Length: {value}\r\n\r\n".encode("latin-1")
    assert relaylink.parse_response_head(head) == (403, 0)
