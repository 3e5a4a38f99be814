"""The host channel (``wire/hostchannel.py``): every frame the server reads from an agent
(``decode_agent_message``) and the agent reads from the server (``decode_server_message``).

What holds for any input:
- Both decoders return a message of a known type holding exactly that type's fields, or raise
  ``ProtocolError`` with a close code of the protocol, and nothing else; a frame that is not UTF-8 (a
  binary WebSocket frame) is refused.
- The fields the protocol gives a pattern (command ids and names, host names, user names, check names)
  hold no control characters.
- A message a decoder returns can be sent again: ``encode`` takes it and it decodes to the same message.
"""
from __future__ import annotations

from typing import Any

from wire import hostchannel

DECODERS = (
    (hostchannel.decode_agent_message, hostchannel.AGENT_MESSAGES),
    (hostchannel.decode_server_message, hostchannel.SERVER_MESSAGES),
)
CONTROL_CHARACTERS = {chr(code) for code in (*range(0x20), 0x7F)}


def test_one_input(data: bytes) -> None:
    try:
        frame: str | bytes = data.decode("utf-8")
    except UnicodeDecodeError:
        frame = data  # what arrives in a binary frame
    for decode, table in DECODERS:
        try:
            message = decode(frame)
        except hostchannel.ProtocolError as error:
            assert error.close_code in hostchannel.CLOSE_REASONS, error.close_code
            continue
        assert isinstance(frame, str), "a binary frame was accepted"
        kind = message["type"]
        assert set(message) == {"type", *table[kind]}, message
        for text in identifiers(message):
            assert not CONTROL_CHARACTERS & set(text), (kind, text)
        assert decode(hostchannel.encode(message)) == message  # type: ignore[arg-type]


def identifiers(message: dict[str, Any]) -> list[str]:
    """The values of the fields whose pattern allows no control characters."""
    values = [message[name] for name in ("id", "command") if name in message]
    if message["type"] == "welcome":
        values.append(message["name"])
    if message["type"] == "heartbeat":
        values += [check["name"] for check in message["checks"]]
        if isinstance(message["sessions"], list):
            values += [session["username"] for session in message["sessions"]]
    return values
