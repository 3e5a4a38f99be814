"""The .rdp file grammar (PROTOCOLS.md §1.1): the one definition of how a file's bytes become settings.

* Bytes: UTF-16LE after an ``FF FE`` byte-order mark, as rdpsign.exe writes and every client reads;
  otherwise UTF-8 (a UTF-8 BOM is tolerated). We always write UTF-16LE with the BOM and CRLF line ends.
* Lines: one setting per line, ``name:type:value``, where the type is ``s`` (string), ``i`` (integer) or
  ``b`` (binary). Names are case-insensitive; surrounding blanks of names and values are ignored, as
  clients do; blank lines carry nothing. When a name appears twice, clients use the last line.

Pure functions (no Django): the feed writes files (feed.rdpfile, feed.rdpsign), host pools validate their
custom properties (broker.rdpproperties), the connector reads the files the feed serves.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_FILE_BYTES = 1 << 20  # a generated file is a few kilobytes; anything near this is not an .rdp file
STRING, INTEGER, BINARY = "s", "i", "b"
TYPES = (STRING, INTEGER, BINARY)
BOM_UTF16LE = b"\xff\xfe"
BOM_UTF8 = b"\xef\xbb\xbf"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class RdpFileFormatError(ValueError):
    """Bytes that are not an .rdp file; the message says why."""


@dataclass(frozen=True)
class Setting:
    """One ``name:type:value`` line, the name in lower case."""

    name: str
    type: str
    value: str

    @property
    def line(self) -> str:
        return format_line(self.name, self.type, self.value)


def decode(data: bytes) -> str:
    """The text of a file: UTF-16LE after its BOM, otherwise UTF-8 (BOM tolerated)."""
    if len(data) > MAX_FILE_BYTES:
        raise RdpFileFormatError(f"the file is larger than {MAX_FILE_BYTES} bytes; is it a .rdp file?")
    try:
        if data.startswith(BOM_UTF16LE):
            return data[len(BOM_UTF16LE):].decode("utf-16-le")
        if data.startswith(BOM_UTF8):
            data = data[len(BOM_UTF8):]
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RdpFileFormatError(f"the file is neither UTF-16LE with a BOM nor UTF-8 ({exc.reason}); "
                                 "is it a .rdp file?") from None


def encode(text: str) -> bytes:
    """The file as we serve it: UTF-16LE with its BOM, every line ended by CRLF."""
    return BOM_UTF16LE + "".join(line + "\r\n" for line in split_lines(text, keep_blank=True)).encode("utf-16-le")


def split_lines(text: str, *, keep_blank: bool = False) -> list[str]:
    """The lines of ``text`` whatever their line ends (CRLF, LF or CR), without a trailing empty line;
    stripped and without blank lines unless ``keep_blank``."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    if keep_blank:
        return lines
    return [line.strip() for line in lines if line.strip()]


def parse_line(line: str) -> Setting | None:
    """The setting of a ``name:type:value`` line, or None when the line is not one (the type is one
    character; whether it is a known type is the caller's question)."""
    name, colon, rest = line.partition(":")
    type_, colon2, value = rest.partition(":")
    if not colon or not colon2 or not name.strip() or len(type_) != 1:
        return None
    return Setting(name.strip().lower(), type_, value.strip())


def read_settings(text: str) -> dict[str, Setting]:
    """Every well-formed ``s``/``i``/``b`` setting of a file by lower-case name, the last line of a name
    winning (as clients read it); other lines are ignored."""
    settings: dict[str, Setting] = {}
    for line in split_lines(text):
        setting = parse_line(line)
        if setting is not None and setting.type in TYPES:
            settings[setting.name] = setting
    return settings


def format_line(name: str, type_: str, value: str) -> str:
    return f"{name}:{type_}:{value}"
