"""The .rdp grammar (wire/rdpfile.py): bytes to text, text to settings, and back, as clients read files."""
from __future__ import annotations

import pytest

from wire import rdpfile


def test_files_are_written_as_utf16le_with_a_bom_and_crlf_line_ends():
    data = rdpfile.encode("full address:s:pool-a\nscreen mode id:i:2\r\nx:s:é")
    assert data.startswith(b"\xff\xfe")
    assert data[2:].decode("utf-16-le") == "full address:s:pool-a\r\nscreen mode id:i:2\r\nx:s:é\r\n"


@pytest.mark.parametrize("data", [
    b"\xff\xfe" + "full address:s:h\r\n".encode("utf-16-le"),
    b"\xef\xbb\xbffull address:s:h\r\n",
    b"full address:s:h\r\n",
])
def test_utf16le_with_its_bom_and_utf8_with_or_without_one_are_read(data):
    assert rdpfile.decode(data) == "full address:s:h\r\n"


@pytest.mark.parametrize(("data", "why"), [
    (b"\xff\xfe\x00", "neither UTF-16LE"),
    (b"\x89PNG\r\n\x1a\n\xff\x00\xfe", "neither UTF-16LE"),
    (b"a" * (rdpfile.MAX_FILE_BYTES + 1), "larger than"),
])
def test_bytes_that_are_not_an_rdp_file_are_refused(data, why):
    with pytest.raises(rdpfile.RdpFileFormatError, match=why):
        rdpfile.decode(data)


@pytest.mark.parametrize(("line", "setting"), [
    ("full address:s:pool-a", ("full address", "s", "pool-a")),
    ("  Full Address : s :x", None),  # the type is one character
    ("Full Address:s: pool-a ", ("full address", "s", "pool-a")),
    ("remoteapplicationcmdline:s:a:b:c", ("remoteapplicationcmdline", "s", "a:b:c")),
    ("audiomode:i:", ("audiomode", "i", "")),
    ("no colon", None), ("name:ss:value", None), (":s:value", None), ("name:s", None),
])
def test_a_line_is_name_type_value(line, setting):
    parsed = rdpfile.parse_line(line)
    assert (parsed.name, parsed.type, parsed.value) == setting if setting else parsed is None


def test_a_files_settings_are_read_case_insensitively_and_the_last_line_wins():
    text = "Full Address:s:first\r\n\r\nfull address:s:second\rbogus line\nweird:x:1\ngatewayaccesstoken:s:t\n"
    settings = rdpfile.read_settings(text)
    assert {name: s.value for name, s in settings.items()} == {"full address": "second", "gatewayaccesstoken": "t"}


def test_a_setting_writes_back_as_its_line():
    assert rdpfile.Setting("audiomode", "i", "2").line == rdpfile.format_line("audiomode", "i", "2") == "audiomode:i:2"


def test_lines_split_on_any_line_end():
    assert rdpfile.split_lines("a\r\nb\rc\n\n  d  \n") == ["a", "b", "c", "d"]
    assert rdpfile.split_lines("a\r\n\r\nb\r\n", keep_blank=True) == ["a", "", "b"]
