"""Fuzz harnesses for the parsers of outside input: whatever arrives, each answers with its value or its
own documented error — never another exception, never a hang.

Hypothesis generates the input (random bytes and text, JSON of any shape, near misses of the real
formats); each property runs a few hundred examples, so the suite stays quick. Run one harness longer
with ``--hypothesis-seed`` and a larger ``max_examples`` when changing a parser.
"""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import httpupgrade, rdg
from tests.fuzz import fuzz_rdcleanpath
from wire import base64url, hostchannel, rdcleanpath, rdpfile, relaylink, tickets, x224

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)


def messages_like(table: dict) -> st.SearchStrategy[dict]:
    """JSON objects that name a real message type, with fields of the right names and any values."""
    return st.sampled_from(sorted(table)).flatmap(lambda kind: st.fixed_dictionaries(
        {"type": st.just(kind)}, optional={name: json_values for name in table[kind]}))


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 messages_like(hostchannel.AGENT_MESSAGES).map(json.dumps),
                 messages_like(hostchannel.SERVER_MESSAGES).map(json.dumps)))
def test_host_channel_frames(frame):
    for decode in (hostchannel.decode_agent_message, hostchannel.decode_server_message):
        try:
            message = decode(frame)
        except hostchannel.ProtocolError:
            continue
        assert isinstance(message, dict) and message["type"] in {**hostchannel.AGENT_MESSAGES,
                                                                  **hostchannel.SERVER_MESSAGES}


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda obj: json.dumps(obj).encode() + b"\n",
                           st.fixed_dictionaries({"type": st.sampled_from(
                               ["challenge", "hello", "fail", "ready", "refused", "other"])},
                               optional={key: json_values for key in
                                         ("nonce", "certificate", "signature", "ticket", "reason", "detail")}))))
def test_agent_link_control_lines(line):
    try:
        message = relaylink.decode(line, ("challenge", "hello", "fail", "ready", "refused"))
    except relaylink.LinkError:
        return
    assert message["type"] in ("challenge", "hello", "fail", "ready", "refused")


@FUZZ
@given(st.binary(max_size=400), st.text(max_size=200))
def test_agent_link_response_heads_paths_and_urls(head, text):
    for parse in (lambda: relaylink.parse_response_head(head + b"\r\n\r\n"), lambda: relaylink.split_url(text)):
        try:
            parse()
        except relaylink.LinkError:
            pass
    assert relaylink.activity_from_path(text) in (None, text[len(relaylink.PATH_PREFIX):].rstrip("/"))


@FUZZ
@given(st.one_of(st.text(max_size=300), st.from_regex(r"(wct1|wht1)\.[A-Za-z0-9_-]{0,200}\.[A-Za-z0-9_-]{0,60}",
                                                      fullmatch=True),
                 json_values.map(lambda value: "wct1." + base64url.encode(json.dumps(value).encode()) + ".sig")))
def test_tickets(ticket):
    read = tickets.read_connection_ticket(ticket)  # never raises
    assert read is None or isinstance(read, tickets.ConnectionTicket)
    try:
        envelope = tickets.parse_envelope(ticket)
        claims = tickets.decode_claims(envelope)
        (tickets.connection_ticket if envelope.kind == tickets.CONNECTION_KIND else tickets.host_ticket)(claims)
    except tickets.TicketFormatError:
        pass


@FUZZ
@given(st.text(max_size=100))
def test_base64url(text):
    try:
        assert isinstance(base64url.decode(text), bytes)
    except base64url.Base64urlError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=500), st.text(max_size=300).map(rdpfile.encode),
                 st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass"))))
def test_rdp_files(data):
    try:
        text = rdpfile.decode(data)
    except rdpfile.RdpFileFormatError:
        return
    for name, setting in rdpfile.read_settings(text).items():
        assert name == setting.name and setting.type in rdpfile.TYPES


@FUZZ
@given(st.binary(max_size=600))
def test_rd_gateway_packets_and_request_heads(data):
    try:
        packet, consumed = rdg.parse_packet(data)
        assert 0 <= consumed <= len(data) and (packet is None) == (consumed == 0)
    except rdg.ProtocolError:
        pass
    try:
        head, consumed = httpupgrade.parse_request_head(data)
        assert 0 <= consumed <= len(data)
    except httpupgrade.HttpError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=40),
                 st.binary(min_size=7, max_size=30).map(lambda tail: bytes([3, 0, 0, 4 + len(tail)]) + tail)))
def test_x224_connection_confirms(packet):
    try:
        confirm = x224.parse_connection_confirm(packet)
    except x224.X224Error:
        return
    assert isinstance(confirm, x224.Confirm)


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + (bytes([len(body)]) if len(body) < 128 else b"\x82" + len(body).to_bytes(2, "big")) + body


# Near misses of a browser's request: any of its fields, with any values, in a DER sequence.
rdcleanpath_fields = st.lists(st.tuples(st.integers(0xA0, 0xAA), st.sampled_from([0x02, 0x04, 0x0C, 0x30]),
                                        st.binary(max_size=40)), max_size=8).map(
    lambda fields: _der(0x30, b"".join(_der(tag, _der(inner, body)) for tag, inner, body in fields)))


@FUZZ
@given(st.one_of(st.binary(max_size=300), rdcleanpath_fields,
                 st.builds(lambda d, a, x: rdcleanpath.encode_request(destination=d, proxy_auth=a,
                                                                      x224_connection_request=x),
                           st.text(max_size=30), st.text(max_size=60), st.binary(max_size=60))))
def test_rdcleanpath_pdus(data):
    fuzz_rdcleanpath.test_one_input(data)
