"""base64url without padding: the one encoding of binary values in tickets and both host links."""
from __future__ import annotations

import pytest

from wire import base64url


@pytest.mark.parametrize(("data", "text"), [(b"", ""), (b"\xfb\xff", "-_8"), (b"any carnal pleas", "YW55IGNhcm5hbCBwbGVhcw")])
def test_it_encodes_without_padding_in_the_url_safe_alphabet(data, text):
    assert base64url.encode(data) == text
    assert base64url.decode(text) == data


def test_it_decodes_with_or_without_padding():
    assert base64url.decode("YW55") == base64url.decode("YW55") == b"any"
    assert base64url.decode("YQ") == base64url.decode("YQ==") == b"a"


@pytest.mark.parametrize("text", [
    "Y", "YWJjZ", "\u00e9\u00e9\u00e9\u00e9", None, 7,
    "a b$c!d", "YW+5", "YW/5", "YQ=", "YQ===", "YWJj=", "Y=Q=",  # outside the alphabet, wrong padding
    "YR",  # stray bits: "YQ" is the one spelling of b"a"
])
def test_it_refuses_what_is_not_base64url(text):
    with pytest.raises(base64url.Base64urlError):
        base64url.decode(text)
