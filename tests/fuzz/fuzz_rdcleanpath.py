"""RDCleanPath (``wire/rdcleanpath.py``): the browser's first message as the gateway reads it, and the
answers as our test client reads them.

What holds for any input:
- ``decode_request`` returns a Request whose fields are within their bounds, or raises
  ``RDCleanPathError`` and nothing else; a Request it returns, encoded again, is the input itself (DER
  has one encoding, and nothing else passes).
- ``decode_response`` returns a Response or raises ``RDCleanPathError`` and nothing else.
"""
from __future__ import annotations

from wire import rdcleanpath


def test_one_input(data: bytes) -> None:
    check_request(data)
    check_response(data)


def check_request(data: bytes) -> None:
    try:
        request = rdcleanpath.decode_request(data)
    except rdcleanpath.RDCleanPathError:
        return
    assert len(data) <= rdcleanpath.MAX_REQUEST_SIZE
    assert len(request.x224_connection_request) <= rdcleanpath.MAX_X224
    for value in (request.destination, request.proxy_auth):
        assert isinstance(value, str) and len(value) <= rdcleanpath.MAX_STRING
    if request.server_auth is None:
        again = rdcleanpath.encode_request(destination=request.destination, proxy_auth=request.proxy_auth,
                                           x224_connection_request=request.x224_connection_request,
                                           preconnection_blob=request.preconnection_blob)
        assert again == data, (data, again)


def check_response(data: bytes) -> None:
    try:
        response = rdcleanpath.decode_response(data)
    except rdcleanpath.RDCleanPathError:
        return
    assert response.error is None or isinstance(response.error.error_code, int)
