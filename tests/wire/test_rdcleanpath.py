"""RDCleanPath against IronRDP's own vectors.

The byte vectors are copied from Devolutions/IronRDP, crates/ironrdp-testsuite-core/tests/rdcleanpath.rs
(REQUEST_DER, RESPONSE_SUCCESS_DER, RESPONSE_HTTP_ERROR_DER, RESPONSE_TLS_ERROR_DER; the file at commit
13332a560bdecc1ad210607c4a007602a9bbeabb), which IronRDP's client encodes and decodes byte for byte.
"""
from __future__ import annotations

import pytest

from wire import rdcleanpath as rcp
from wire.rdcleanpath import RDCleanPathError

DEADBEEF = bytes([0xDE, 0xAD, 0xBE, 0xFF])

REQUEST_DER = bytes([
    0x30, 0x32, 0xA0, 0x4, 0x2, 0x2, 0xD, 0x3E, 0xA2, 0xD, 0xC, 0xB, 0x64, 0x65, 0x73, 0x74, 0x69, 0x6E, 0x61, 0x74,
    0x69, 0x6F, 0x6E, 0xA3, 0xC, 0xC, 0xA, 0x70, 0x72, 0x6F, 0x78, 0x79, 0x20, 0x61, 0x75, 0x74, 0x68, 0xA5, 0x5, 0xC,
    0x3, 0x50, 0x43, 0x42, 0xA6, 0x6, 0x4, 0x4, 0xDE, 0xAD, 0xBE, 0xFF,
])
RESPONSE_SUCCESS_DER = bytes([
    0x30, 0x34, 0xA0, 0x4, 0x2, 0x2, 0xD, 0x3E, 0xA6, 0x6, 0x4, 0x4, 0xDE, 0xAD, 0xBE, 0xFF, 0xA7, 0x14, 0x30, 0x12,
    0x4, 0x4, 0xDE, 0xAD, 0xBE, 0xFF, 0x4, 0x4, 0xDE, 0xAD, 0xBE, 0xFF, 0x4, 0x4, 0xDE, 0xAD, 0xBE, 0xFF, 0xA9, 0xE,
    0xC, 0xC, 0x31, 0x39, 0x32, 0x2E, 0x31, 0x36, 0x38, 0x2E, 0x37, 0x2E, 0x39, 0x35,
])
RESPONSE_HTTP_ERROR_DER = bytes([
    0x30, 0x15, 0xA0, 0x4, 0x2, 0x2, 0xD, 0x3E, 0xA1, 0xD, 0x30, 0xB, 0xA0, 0x3, 0x2, 0x1, 0x1, 0xA1, 0x4, 0x2, 0x2,
    0x1, 0xF4,
])
RESPONSE_TLS_ERROR_DER = bytes([
    0x30, 0x14, 0xA0, 0x04, 0x02, 0x02, 0x0D, 0x3E, 0xA1, 0x0C, 0x30, 0x0A, 0xA0, 0x03, 0x02, 0x01, 0x01, 0xA3, 0x03,
    0x02, 0x01, 0x30,
])


def test_it_decodes_ironrdps_request():
    request = rcp.decode_request(REQUEST_DER)
    assert request == rcp.Request(destination="destination", proxy_auth="proxy auth",
                                  x224_connection_request=DEADBEEF, preconnection_blob="PCB")


def test_it_encodes_ironrdps_request_byte_for_byte():
    assert rcp.encode_request(destination="destination", proxy_auth="proxy auth", x224_connection_request=DEADBEEF,
                              preconnection_blob="PCB") == REQUEST_DER


def test_it_encodes_ironrdps_success_response_byte_for_byte():
    assert rcp.encode_response(server_addr="192.168.7.95", x224_connection_confirm=DEADBEEF,
                               server_cert_chain=[DEADBEEF] * 3) == RESPONSE_SUCCESS_DER


def test_it_encodes_ironrdps_http_error_byte_for_byte():
    assert rcp.encode_error(http_status_code=500) == RESPONSE_HTTP_ERROR_DER


def test_it_encodes_ironrdps_tls_error_byte_for_byte():
    assert rcp.encode_error(tls_alert_code=48) == RESPONSE_TLS_ERROR_DER


def test_responses_read_back():
    success = rcp.decode_response(RESPONSE_SUCCESS_DER)
    assert success.server_addr == "192.168.7.95" and success.x224_connection_pdu == DEADBEEF
    assert success.server_cert_chain == (DEADBEEF,) * 3 and success.error is None
    assert rcp.decode_response(RESPONSE_HTTP_ERROR_DER).error == rcp.ErrorInfo(1, http_status_code=500)
    assert rcp.decode_response(RESPONSE_TLS_ERROR_DER).error == rcp.ErrorInfo(1, tls_alert_code=48)


def test_a_negotiation_error_carries_the_servers_confirm():
    der = rcp.encode_error(error_code=rcp.NEGOTIATION_ERROR, http_status_code=502, x224_connection_confirm=b"\x03cc")
    decoded = rcp.decode_response(der)
    assert decoded.error == rcp.ErrorInfo(2, http_status_code=502) and decoded.x224_connection_pdu == b"\x03cc"


@pytest.mark.parametrize("der", [RESPONSE_SUCCESS_DER, RESPONSE_HTTP_ERROR_DER, RESPONSE_TLS_ERROR_DER],
                         ids=["response", "http-error", "tls-error"])
def test_it_refuses_a_response_where_a_request_is_expected(der):
    with pytest.raises(RDCleanPathError, match="request was expected"):
        rcp.decode_request(der)


def test_it_refuses_another_version():
    other = bytearray(REQUEST_DER)
    other[7] = 0x3D  # 3389: IronRDP's BASE_VERSION, not a version any client speaks
    with pytest.raises(RDCleanPathError, match="version 3389"):
        rcp.decode_request(bytes(other))


@pytest.mark.parametrize("cut", [0, 1, 2, 10, len(REQUEST_DER) - 1])
def test_it_refuses_a_truncated_request(cut):
    with pytest.raises(RDCleanPathError):
        rcp.decode_request(REQUEST_DER[:cut])


def test_it_refuses_bytes_after_the_pdu():
    with pytest.raises(RDCleanPathError, match="after the PDU"):
        rcp.decode_request(REQUEST_DER + b"\x00")


def test_it_refuses_a_request_past_the_size_bound_before_parsing():
    huge = rcp.encode_request(destination="d", proxy_auth="x" * rcp.MAX_REQUEST_SIZE, x224_connection_request=b"x")
    with pytest.raises(RDCleanPathError, match="exceeds"):
        rcp.decode_request(huge)


@pytest.mark.parametrize("missing", ["destination", "proxy_auth", "x224_connection_pdu"])
def test_it_refuses_a_request_without_a_required_field(missing):
    fields = {"version": rcp.VERSION, "destination": "d", "proxy_auth": "t", "x224_connection_pdu": b"x"}
    del fields[missing]
    with pytest.raises(RDCleanPathError, match="no "):
        rcp.decode_request(rcp._pdu(fields))


def test_it_refuses_invalid_utf8_in_a_string():
    bad = REQUEST_DER.replace(b"proxy auth", b"proxy\xffauth")
    with pytest.raises(RDCleanPathError, match="not valid UTF-8"):
        rcp.decode_request(bad)


@pytest.mark.parametrize("ber, why", [
    (b"\x30\x80" + REQUEST_DER[2:] + b"\x00\x00", "indefinite length"),
    (b"\x30\x81\x32" + REQUEST_DER[2:], "shortest form"),
    (REQUEST_DER.replace(b"\x02\x02\x0d\x3e", b"\x02\x03\x00\x0d\x3e").replace(b"\x30\x32\xa0\x04", b"\x30\x33\xa0\x05"),
     "minimal form"),
], ids=["indefinite-length", "long-form-length", "padded-integer"])
def test_it_refuses_ber_that_is_not_der(ber, why):
    with pytest.raises(RDCleanPathError, match=why):
        rcp.decode_request(ber)


def test_it_refuses_fields_out_of_order_or_repeated():
    version = REQUEST_DER[2:8]
    destination = REQUEST_DER[8:23]
    with pytest.raises(RDCleanPathError, match="out of order"):
        rcp.decode_request(bytes([0x30, 6 + 2 * 15]) + version + destination + destination)


def test_it_refuses_an_unknown_field():
    with pytest.raises(RDCleanPathError, match="unexpected element"):
        rcp.decode_request(bytes([0x30, 0x0B]) + REQUEST_DER[2:8] + bytes([0xA8, 0x03, 0x02, 0x01, 0x00]))


def test_asn1cryptos_crash_is_a_clean_refusal_here():
    """The input that made asn1crypto raise AttributeError (see wire/rdcleanpath.py's docstring): IronRDP's
    success response with the tag of [6] changed to a universal one."""
    mutated = bytearray(RESPONSE_SUCCESS_DER)
    mutated[8] = 0x32
    with pytest.raises(RDCleanPathError, match="unexpected element"):
        rcp.decode_response(bytes(mutated))


def test_long_values_round_trip_with_long_form_lengths():
    request = rcp.Request(destination="d" * 300, proxy_auth="t" * 4000,
                          x224_connection_request=bytes(range(256)) * 3)
    der = rcp.encode_request(destination=request.destination, proxy_auth=request.proxy_auth,
                             x224_connection_request=request.x224_connection_request)
    assert der[:2] == b"\x30\x82" and rcp.decode_request(der) == request


@pytest.mark.parametrize("kwargs", [{"http_status_code": 70000}, {"tls_alert_code": 256}, {"error_code": -1},
                                    {"wsa_last_error": True}])
def test_it_encodes_no_value_ironrdp_cannot_read(kwargs):
    with pytest.raises(ValueError):
        rcp.encode_error(**kwargs)


def test_the_length_of_a_pdu_is_known_from_its_first_bytes():
    assert [rcp.pdu_length(REQUEST_DER[:n]) for n in range(3)] == [None, None, len(REQUEST_DER)]
    long_one = rcp.encode_request(destination="d", proxy_auth="t" * 600, x224_connection_request=b"x")
    assert rcp.pdu_length(long_one[:3]) is None and rcp.pdu_length(long_one[:4]) == len(long_one)


@pytest.mark.parametrize("prefix", [b"\x04\x02", b"\x30\x80", b"\x30\x83\x01\x00\x00", b"\x30\x82\x40\x01"])
def test_a_first_message_that_cannot_be_a_request_is_refused_from_its_first_bytes(prefix):
    with pytest.raises(RDCleanPathError):
        rcp.pdu_length(prefix)
