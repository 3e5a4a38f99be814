"""The X.224 Disconnect Request the raw-WebSocket transport refuses with after the upgrade (gateway/x224.py)."""
from __future__ import annotations

import pytest

from gateway import x224


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
    with pytest.raises(ValueError):
        x224.disconnect_request(256)
