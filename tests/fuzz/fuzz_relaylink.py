"""The agent link (``wire/relaylink.py``): its control lines, the gateway's response head as the agent
reads it, and the relay URL the agent dials.

What holds for any input:
- ``decode`` returns a message of one of the expected types holding exactly that type's fields, of the
  right kinds and sizes, or raises ``LinkError`` and nothing else; a message it returns, encoded again by
  the link's own constructors, decodes to the same message (when it still fits a control line).
- ``parse_response_head`` returns a three-digit status and a Content-Length (0 without one), or raises
  ``LinkError`` and nothing else.
- ``split_url`` returns what the agent needs to dial (a host, a port, the relay path) or raises
  ``LinkError`` and nothing else; the upgrade request for what it returns can be built.
"""
from __future__ import annotations

from wire import relaylink

KINDS = ("challenge", "hello", "fail", "ready", "refused")
FIELDS = {
    "challenge": {"nonce": bytes},
    "hello": {"certificate": str, "signature": bytes, "ticket": str},
    "fail": {"reason": str, "detail": str, "ticket": str},
    "ready": {},
    "refused": {"reason": str},
}
# The constructor of each control message, from its decoded fields.
ENCODERS = {
    "challenge": lambda m: relaylink.challenge(m["nonce"]),
    "hello": lambda m: relaylink.hello(m["certificate"], m["signature"], m["ticket"]),
    "fail": lambda m: relaylink.fail(m["reason"], m["detail"], m["ticket"]),
    "ready": lambda m: relaylink.ready(),
    "refused": lambda m: relaylink.refused(m["reason"]),
}


def test_one_input(data: bytes) -> None:
    check_control_line(data)
    check_response_head(data)
    if not data.endswith(b"\r\n\r\n"):
        check_response_head(data + b"\r\n\r\n")
    check_url(data.decode("utf-8", "replace"))


def check_control_line(line: bytes) -> None:
    try:
        message = relaylink.decode(line, KINDS)
    except relaylink.LinkError:
        return
    kind = message["type"]
    assert set(message) == {"type", *FIELDS[kind]}, message
    for name, kind_of_value in FIELDS[kind].items():
        assert isinstance(message[name], kind_of_value), (name, message)
    if kind == "fail":
        assert message["reason"] in relaylink.FAIL_REASONS and len(message["detail"]) <= 300
    # Only the expected types pass.
    assert relaylink.decode(line, (kind,)) == message
    try:
        relaylink.decode(line, tuple(other for other in KINDS if other != kind))
    except relaylink.LinkError:
        pass
    else:
        raise AssertionError(f"a {kind} message passed where it was not expected")
    again = ENCODERS[kind](message)
    if len(again) <= relaylink.MAX_CONTROL_LINE:  # escaping can lengthen a line that fit as sent
        assert relaylink.decode(again, KINDS) == message, (message, again)


def check_response_head(head: bytes) -> None:
    try:
        status, length = relaylink.parse_response_head(head)
    except relaylink.LinkError:
        return
    assert 0 <= status <= 999 and length >= 0, (status, length)


def check_url(url: str) -> None:
    try:
        tls, host, port, path = relaylink.split_url(url)
    except relaylink.LinkError:
        return
    assert isinstance(tls, bool) and host and 0 <= port <= 65535
    assert relaylink.activity_from_path(path) is not None
    assert relaylink.upgrade_request(host, port, path).endswith(b"\r\n\r\n")
