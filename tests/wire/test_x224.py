"""The first two PDUs of an RDP connection, against the examples of [MS-RDPBCGR] 4.1.1 and 4.1.2."""
from __future__ import annotations

import pytest

from wire import x224

# [MS-RDPBCGR] 4.1.1 Client X.224 Connection Request PDU: cookie "eltons", PROTOCOL_RDP requested.
SPEC_REQUEST = bytes.fromhex(
    "0300002c27e00000000000436f6f6b69653a206d737473686173683d656c746f6e730d0a0100080000000000"
)
# [MS-RDPBCGR] 4.1.2 Server X.224 Connection Confirm PDU: PROTOCOL_RDP selected.
SPEC_CONFIRM = bytes.fromhex("030000130ed00000123400" "0200080000000000")


def test_a_request_is_built_as_the_specification_shows():
    assert x224.connection_request(x224.PROTOCOL_RDP, cookie="eltons") == SPEC_REQUEST


def test_a_request_without_a_cookie_asks_for_tls():
    packet = x224.connection_request(x224.PROTOCOL_SSL | x224.PROTOCOL_HYBRID)
    assert packet == bytes.fromhex("030000130ee00000000000" "0100080003000000")
    assert x224.packet_length(packet[:4]) == len(packet)


def test_the_specifications_confirm_selects_standard_rdp():
    assert x224.parse_connection_confirm(SPEC_CONFIRM) == x224.Confirm(selected_protocol=x224.PROTOCOL_RDP)


def test_a_confirm_selecting_tls():
    packet = bytes.fromhex("030000130ed00000123400" "0200080001000000")
    assert x224.parse_connection_confirm(packet).selected_protocol == x224.PROTOCOL_SSL


def test_a_negotiation_failure_is_named():
    packet = bytes.fromhex("030000130ed00000123400" "0300080002000000")
    assert x224.parse_connection_confirm(packet) == x224.Confirm(failure="SSL_NOT_ALLOWED_BY_SERVER")


def test_a_confirm_without_negotiation_data_is_standard_rdp():
    assert x224.parse_connection_confirm(bytes.fromhex("0300000b06d00000123400")) == x224.Confirm()


@pytest.mark.parametrize(("packet", "problem"), [
    (b"\x16\x03\x01\x00\x10", "not a TPKT packet"),  # a TLS record: the listener speaks TLS directly
    (bytes.fromhex("030000130ee00000000000" "0100080003000000"), "not a Connection Confirm"),
    (bytes.fromhex("030000130ed00000123400" "02000800010000"), "header says"),
    (bytes.fromhex("030000130fd00000123400" "0200080001000000"), "length indicator"),
    (bytes.fromhex("030003000ed00000123400"), "not that of a connection PDU"),
    (bytes.fromhex("030000130ed00000123400" "0700080001000000"), "type 0x07"),
])
def test_anything_else_is_refused_with_a_reason(packet, problem):
    with pytest.raises(x224.X224Error, match=problem):
        x224.parse_connection_confirm(packet)


def test_a_cookie_cannot_break_the_line():
    with pytest.raises(x224.X224Error):
        x224.connection_request(x224.PROTOCOL_SSL, cookie="a\r\nb")


# The Disconnect Request the raw-WebSocket transport refuses with after the upgrade (gateway/transports/wst.py).


def test_a_disconnect_request_is_the_eleven_bytes_of_x224_class_0_in_a_tpkt():
    # TPKT: version 3, reserved, length 11; X.224 DR: LI 6, code 0x80, DST-REF 0, SRC-REF 0, reason 0.
    assert x224.disconnect_request() == bytes.fromhex("0300000b 06 80 0000 0000 00".replace(" ", ""))
    assert x224.disconnect_request(3)[-1] == 3


def test_it_recognises_a_disconnect_request_and_nothing_else():
    assert x224.is_disconnect_request(x224.disconnect_request())
    # A Connection Confirm (0xD0) is not one; neither is a truncated or padded packet.
    assert not x224.is_disconnect_request(bytes.fromhex("0300000b06d00000123400"))
    assert not x224.is_disconnect_request(x224.disconnect_request()[:-1])
    assert not x224.is_disconnect_request(x224.disconnect_request() + b"\x00")


def test_a_reason_is_one_byte():
    with pytest.raises(x224.X224Error):
        x224.disconnect_request(256)


def test_a_connection_request_passes_its_check_and_other_pdus_do_not():
    request = x224.connection_request(x224.PROTOCOL_SSL | x224.PROTOCOL_HYBRID, cookie="alice")
    x224.check_connection_request(request)
    for other in (x224.disconnect_request(), request[:-1], request + b"\x00", b"\x03\x00\x00\x04"):
        with pytest.raises(x224.X224Error):
            x224.check_connection_request(other)
