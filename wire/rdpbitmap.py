"""Re-present padded bitmap updates so IronRDP's published web client (0.7.0) draws them unsheared.

An RDP bitmap rectangle (``TS_BITMAP_DATA``, [MS-RDPBCGR] 2.2.9.1.1.3.1.2.2) has a destination
(``destLeft..destRight`` inclusive) and a source size (``width`` x ``height``). xrdp's
``libxrdp_send_bitmap`` pads ``width`` to a multiple of 4 while ``destRight`` keeps the true width; the
padding holds zeros (uncompressed) or the row's last pixel repeated (Interleaved RLE), never screen
pixels. ``@devolutions/iron-remote-desktop-rdp`` 0.7.0 decodes with ``width`` but copies rows to the
screen with the destination width as the stride (fixed upstream in IronRDP #1486, not published), so every
rectangle whose width is not a multiple of 4 shears.

``ServerBitmapFix`` rewrites the server-to-client plaintext RDP byte stream (what follows the TLS
handshake: slow-path TPKT/X.224/MCS PDUs and fast-path output PDUs) so that each such rectangle is sent
with ``width`` equal to the destination width, which both that client and a correct one draw right. The
padding columns are dropped: Interleaved RLE data (8/15/16/24 bpp) is decoded, cropped and encoded again
(``rle_encode``: about as compact as xrdp's on a desktop, where raw rows would be ~20 times larger), raw
data is re-strided (rows keep the 4-byte alignment the specification asks for). A rectangle whose data
would no longer fit one PDU is split into horizontal bands. Everything else passes through byte for byte:
other PDUs, rectangles that are not padded, RDP 6.0 (32 bpp planar) data, bulk-compressed, encrypted or
fragmented PDUs, and anything that does not parse. Bitmaps are only looked for on the I/O channel, which
the server's Demand Active PDU names.

Where it goes: one instance per connection, fed every plaintext byte the RDP server sends after the TLS
handshake (from the MCS Connect Response on), in order; forward what ``feed`` returns (it may be empty
while a PDU is incomplete) and, at the end, what ``flush`` returns.

Memory is bounded: the transformer holds at most one incomplete PDU (a TPKT or fast-path length is at most
65535 bytes) and decodes at most ``MAX_DECODED_PER_PDU`` bytes of pixels per PDU; rectangles beyond that
budget pass through unchanged. ``feed`` raises ``RdpStreamError`` only when the framing itself is broken
(a byte that starts neither a TPKT nor a fast-path PDU, or a length shorter than its header): the stream
cannot be followed after that, and the caller should close the connection.
"""
from __future__ import annotations

import re
import struct

TPKT_VERSION = 3
X224_DATA = b"\x02\xf0\x80"
MCS_SEND_DATA_INDICATION = 0x68  # DomainMCSPDU choice 26 << 2 ([T125] 7, PER)
PDUTYPE_DEMANDACTIVEPDU = 0x1
PDUTYPE_DATAPDU = 0x7
PDUTYPE2_UPDATE = 0x02
UPDATETYPE_BITMAP = 0x0001
PACKET_COMPRESSED = 0x20
FASTPATH_UPDATETYPE_BITMAP = 0x1
FASTPATH_FRAGMENT_SINGLE = 0x0
FASTPATH_OUTPUT_COMPRESSION_USED = 0x2
BITMAP_COMPRESSION = 0x0001
NO_BITMAP_COMPRESSION_HDR = 0x0400

# The size of a rewritten PDU's payload, near what xrdp sends (16 KiB of bitmap data per PDU).
MAX_PAYLOAD = 16_000
MAX_DECODED_PER_PDU = 4 * 1024 * 1024
BITMAP_DATA_HEADER = 18
RECT_HEADER = struct.Struct("<9H")  # destLeft, destTop, destRight, destBottom, width, height, bpp, flags, len


class RdpStreamError(ValueError):
    """The byte stream is not a sequence of RDP PDUs (the framing cannot be followed)."""


class _Malformed(Exception):
    """A PDU or rectangle that does not parse: it passes through unchanged."""


def bytes_per_pixel(bpp: int) -> int:
    return {8: 1, 15: 2, 16: 2, 24: 3, 32: 4}.get(bpp, 0)


# --- Interleaved RLE ([MS-RDPBCGR] 2.2.9.1.1.3.1.2.4 and its pseudo-code, as IronRDP's rle.rs) ---------
_REGULAR_BG_RUN, _REGULAR_FG_RUN, _REGULAR_FGBG_IMAGE, _REGULAR_COLOR_RUN, _REGULAR_COLOR_IMAGE = 0, 1, 2, 3, 4
_LITE_SET_FG_FG_RUN, _LITE_SET_FG_FGBG_IMAGE, _LITE_DITHERED_RUN = 0xC, 0xD, 0xE
_MEGA_BG, _MEGA_FG, _MEGA_FGBG, _MEGA_COLOR_RUN, _MEGA_COLOR_IMAGE = 0xF0, 0xF1, 0xF2, 0xF3, 0xF4
_MEGA_SET_FG_RUN, _MEGA_SET_FGBG, _MEGA_DITHERED = 0xF6, 0xF7, 0xF8
_SPECIAL_FGBG_1, _SPECIAL_FGBG_2, _SPECIAL_WHITE, _SPECIAL_BLACK = 0xF9, 0xFA, 0xFD, 0xFE


def rle_decode(src: bytes, width: int, height: int, bpp: int) -> bytes:
    """Decode an Interleaved RLE bitmap stream into ``height`` bottom-up rows of ``width`` pixels.

    Raises ``ValueError`` on a stream that does not decode (bad order, short input, output overrun).
    """
    bpx = {8: 1, 15: 2, 16: 2, 24: 3}.get(bpp)
    if bpx is None:
        raise ValueError(f"Interleaved RLE has no {bpp} bpp form")
    if width <= 0 or height <= 0:
        raise ValueError("empty bitmap")
    row = width * bpx
    size = row * height
    dst = bytearray(size)
    white = {8: b"\xff", 15: b"\xff\x7f", 16: b"\xff\xff", 24: b"\xff\xff\xff"}[bpp]
    black = bytes(bpx)
    fg = white
    fg_int = int.from_bytes(fg, "little")
    insert_fg = False
    first_line = True
    pos = 0
    i = 0
    n = len(src)

    def need(count: int) -> None:
        if i + count > n:
            raise ValueError("RLE stream ends inside an order")

    def room(count: int) -> None:
        if pos + count > size:
            raise ValueError("RLE stream decodes past the bitmap")

    def copy_above(count: int) -> None:
        # forward copy from one row up, in pieces that never read bytes not yet written
        nonlocal pos
        end = pos + count
        while pos < end:
            piece = min(end - pos, row)
            dst[pos:pos + piece] = dst[pos - row:pos - row + piece]
            pos += piece

    def xor_above(count: int, pixel: bytes) -> None:
        nonlocal pos
        end = pos + count
        while pos < end:
            piece = min(end - pos, row)
            above = int.from_bytes(dst[pos - row:pos - row + piece], "little")
            mask = int.from_bytes(pixel * (piece // bpx), "little")
            dst[pos:pos + piece] = (above ^ mask).to_bytes(piece, "little")
            pos += piece

    def short_run(header: int, mask: int, scale: int, extended: int) -> int:
        # the length in the order's low bits (times scale), or, when they are 0, in the next byte (plus extended)
        nonlocal i
        if header & mask:
            return (header & mask) * scale
        need(1)
        i += 1
        return src[i - 1] + extended

    def set_fg() -> None:
        nonlocal fg, fg_int, i
        need(bpx)
        fg = bytes(src[i:i + bpx])
        fg_int = int.from_bytes(fg, "little")
        masks.clear()
        i += bpx

    masks: dict[int, bytes] = {}  # (bits << 8 | bitmask) -> the foreground mask, for the current fg

    def foreground_mask(bitmask: int, bits: int) -> bytes:
        # fg where a bit is set, black (0) elsewhere: XORed with the row above, or the pixels of the first line
        key = bits << 8 | bitmask
        mask = masks.get(key)
        if mask is None:
            mask = masks[key] = b"".join(fg if bitmask & (1 << bit) else black for bit in range(bits))
        return mask

    def fgbg(bitmask: int, bits: int) -> None:
        # bit set: foreground (XOR with the pixel above, or fg on the first line); clear: background
        nonlocal pos
        count = bits * bpx
        room(count)
        mask = foreground_mask(bitmask, bits)
        if first_line:
            dst[pos:pos + count] = mask
        elif count <= row:
            above = int.from_bytes(dst[pos - row:pos - row + count], "little")
            dst[pos:pos + count] = (above ^ int.from_bytes(mask, "little")).to_bytes(count, "little")
        else:  # a row narrower than the order: each pixel reads one written just before
            for bit in range(bits):
                above = int.from_bytes(dst[pos - row:pos - row + bpx], "little")
                if bitmask & (1 << bit):
                    above ^= fg_int
                dst[pos:pos + bpx] = above.to_bytes(bpx, "little")
                pos += bpx
            return
        pos += count

    while i < n:
        if first_line and pos >= row:
            first_line = False
            insert_fg = False
        header = src[i]
        i += 1
        if header & 0xC0 != 0xC0:
            code = header >> 5
        elif header & 0xF0 == 0xF0:
            code = header
        else:
            code = header >> 4
        # run length
        if code in (_REGULAR_FGBG_IMAGE, _LITE_SET_FG_FGBG_IMAGE):
            run = short_run(header, 0x1F if code == _REGULAR_FGBG_IMAGE else 0x0F, 8, 1)
        elif code in (_REGULAR_BG_RUN, _REGULAR_FG_RUN, _REGULAR_COLOR_RUN, _REGULAR_COLOR_IMAGE):
            run = short_run(header, 0x1F, 1, 32)
        elif code in (_LITE_SET_FG_FG_RUN, _LITE_DITHERED_RUN):
            run = short_run(header, 0x0F, 1, 16)
        elif code in (_MEGA_BG, _MEGA_FG, _MEGA_SET_FG_RUN, _MEGA_DITHERED, _MEGA_COLOR_RUN, _MEGA_FGBG,
                      _MEGA_SET_FGBG, _MEGA_COLOR_IMAGE):
            need(2)
            run = src[i] | (src[i + 1] << 8)
            i += 2
            if run == 0:
                raise ValueError("zero-length MEGA_MEGA run")
        else:
            run = 0

        if code in (_REGULAR_BG_RUN, _MEGA_BG):
            room(run * bpx)
            count = run
            if insert_fg:
                if first_line:
                    dst[pos:pos + bpx] = fg
                else:
                    above = int.from_bytes(dst[pos - row:pos - row + bpx], "little")
                    dst[pos:pos + bpx] = (above ^ fg_int).to_bytes(bpx, "little")
                pos += bpx
                count -= 1
            if first_line:
                pos += count * bpx  # the buffer starts zeroed: black
            else:
                copy_above(count * bpx)
            insert_fg = True
            continue
        insert_fg = False
        if code in (_REGULAR_FG_RUN, _MEGA_FG, _LITE_SET_FG_FG_RUN, _MEGA_SET_FG_RUN):
            if code in (_LITE_SET_FG_FG_RUN, _MEGA_SET_FG_RUN):
                set_fg()
            room(run * bpx)
            if first_line:
                dst[pos:pos + run * bpx] = fg * run
                pos += run * bpx
            else:
                xor_above(run * bpx, fg)
        elif code in (_LITE_DITHERED_RUN, _MEGA_DITHERED):
            need(2 * bpx)
            pair = bytes(src[i:i + 2 * bpx])
            i += 2 * bpx
            room(run * 2 * bpx)
            dst[pos:pos + run * 2 * bpx] = pair * run
            pos += run * 2 * bpx
        elif code in (_REGULAR_COLOR_RUN, _MEGA_COLOR_RUN):
            need(bpx)
            pixel = bytes(src[i:i + bpx])
            i += bpx
            room(run * bpx)
            dst[pos:pos + run * bpx] = pixel * run
            pos += run * bpx
        elif code in (_REGULAR_FGBG_IMAGE, _MEGA_FGBG, _LITE_SET_FG_FGBG_IMAGE, _MEGA_SET_FGBG):
            if code in (_LITE_SET_FG_FGBG_IMAGE, _MEGA_SET_FGBG):
                set_fg()
            count = run * bpx
            if not first_line and count <= row:  # the whole order in one XOR with the pixels above
                need((run + 7) // 8)
                room(count)
                mask = b"".join(foreground_mask(src[i + k // 8], min(8, run - k)) for k in range(0, run, 8))
                i += (run + 7) // 8
                above = int.from_bytes(dst[pos - row:pos - row + count], "little")
                dst[pos:pos + count] = (above ^ int.from_bytes(mask, "little")).to_bytes(count, "little")
                pos += count
                continue
            left = run
            while left > 0:
                bits = min(8, left)
                need(1)
                bitmask = src[i]
                i += 1
                fgbg(bitmask, bits)
                left -= bits
        elif code in (_REGULAR_COLOR_IMAGE, _MEGA_COLOR_IMAGE):
            count = run * bpx
            need(count)
            room(count)
            dst[pos:pos + count] = src[i:i + count]
            i += count
            pos += count
        elif code == _SPECIAL_FGBG_1:
            fgbg(0x03, 8)
        elif code == _SPECIAL_FGBG_2:
            fgbg(0x05, 8)
        elif code == _SPECIAL_WHITE:
            room(bpx)
            dst[pos:pos + bpx] = white
            pos += bpx
        elif code == _SPECIAL_BLACK:
            room(bpx)
            dst[pos:pos + bpx] = black
            pos += bpx
        else:
            raise ValueError(f"bad RLE order 0x{header:02x}")
    return bytes(dst)


# --- TS_BITMAP_DATA -------------------------------------------------------------------------------------
def _parse_rectangles(data: bytes, offset: int) -> list[tuple[int, int]]:
    """``TS_UPDATE_BITMAP_DATA`` at ``offset`` (updateType, numberRectangles, rectangles) filling ``data``
    to its end: the (start, end) of each rectangle."""
    if len(data) - offset < 4:
        raise _Malformed
    update_type, count = struct.unpack_from("<HH", data, offset)
    if update_type != UPDATETYPE_BITMAP:
        raise _Malformed
    pos = offset + 4
    spans = []
    for _ in range(count):
        if len(data) - pos < BITMAP_DATA_HEADER:
            raise _Malformed
        length = struct.unpack_from("<H", data, pos + 16)[0]
        end = pos + BITMAP_DATA_HEADER + length
        if end > len(data):
            raise _Malformed
        spans.append((pos, end))
        pos = end
    if pos != len(data):
        raise _Malformed
    return spans


def fix_rectangle(rect: bytes, budget: int, max_band: int = MAX_PAYLOAD - 64) -> list[bytes] | None:
    """The ``TS_BITMAP_DATA`` records that draw ``rect`` correctly on a client that strides rows by the
    destination width, or None when ``rect`` needs no change (or cannot be changed: see the module text).

    ``budget`` bounds the decoded pixel bytes; each returned record is at most ``max_band`` bytes."""
    left, top, right, bottom, width, height, bpp, flags, length = RECT_HEADER.unpack_from(rect, 0)
    dest_w = right - left + 1
    dest_h = bottom - top + 1
    bpx = bytes_per_pixel(bpp)
    if right < left or bottom < top or bpx == 0 or width <= dest_w or height == 0:
        return None
    h = min(height, dest_h)
    if width * height * bpx > budget:
        return None
    body = rect[BITMAP_DATA_HEADER:BITMAP_DATA_HEADER + length]
    if flags & BITMAP_COMPRESSION:
        if bpp == 32:
            return None  # RDP 6.0 planar: not padded by xrdp at 16 bpp, and not decoded here
        if not flags & NO_BITMAP_COMPRESSION_HDR:
            if len(body) < 8:
                return None
            body = body[8:]
        try:
            pixels = rle_decode(body, width, height, bpp)
        except ValueError:
            return None
        stride = width * bpx
    else:
        stride = (width * bpx + 3) & ~3
        if len(body) < stride * height:
            return None
        pixels = body
    out_row = dest_w * bpx
    # rows are bottom-up; the visible ones are the top h, the last h in the data
    rows = [pixels[r * stride:r * stride + out_row] for r in range(height - h, height)]
    if flags & BITMAP_COMPRESSION:
        return _compressed_bands(rows, left, top, right, dest_w, bpp, flags, max_band)
    return _raw_bands(rows, left, top, right, dest_w, bpp, max_band)


def _bands(rows: list[bytes], row_cost: int, max_band: int) -> list[tuple[int, int]] | None:
    per_band = (max_band - BITMAP_DATA_HEADER - 8) // row_cost
    if per_band < 1:
        return None
    return [(r0, min(len(rows), r0 + per_band)) for r0 in range(0, len(rows), per_band)]


def _band_record(left: int, top: int, right: int, dest_w: int, rows: int, r0: int, r1: int, bpp: int,
                 flags: int, data: bytes) -> bytes:
    # rows r0..r1 of ``rows`` (bottom-up, the last one at ``top``) as one record
    return RECT_HEADER.pack(left, top + (rows - r1), right, top + (rows - 1 - r0), dest_w, r1 - r0, bpp, flags,
                            len(data)) + data


def _raw_bands(rows: list[bytes], left: int, top: int, right: int, dest_w: int, bpp: int,
               max_band: int) -> list[bytes] | None:
    pad = b"\0" * (-len(rows[0]) % 4)  # uncompressed rows keep a multiple of 4 bytes
    bands = _bands(rows, len(rows[0]) + len(pad), max_band)
    if bands is None:
        return None
    return [_band_record(left, top, right, dest_w, len(rows), r0, r1, bpp, 0,
                         b"".join(row + pad for row in rows[r0:r1])) for r0, r1 in bands]


def _compressed_bands(rows: list[bytes], left: int, top: int, right: int, dest_w: int, bpp: int, flags: int,
                      max_band: int) -> list[bytes] | None:
    # an encoding costs at most a row's bytes plus 3 order headers and a background run per row
    bands = _bands(rows, len(rows[0]) + 12, max_band)
    if bands is None:
        return None
    records = []
    for r0, r1 in bands:
        stream = rle_encode(rows[r0:r1], bpp)
        if flags & NO_BITMAP_COMPRESSION_HDR:
            data = stream
        else:  # TS_CD_HEADER: cbCompFirstRowSize 0, cbCompMainBodySize, cbScanWidth, cbUncompressedSize
            data = struct.pack("<HHHH", 0, len(stream), len(rows[0]), len(rows[0]) * (r1 - r0)) + stream
        records.append(_band_record(left, top, right, dest_w, len(rows), r0, r1, bpp,
                                    flags & (BITMAP_COMPRESSION | NO_BITMAP_COMPRESSION_HDR), data))
    return records


def _order(code: int, mega: int, count: int) -> bytes:
    """A regular order header (``code`` in the top 3 bits) for ``count`` pixels, or its MEGA_MEGA form."""
    if count < 32:
        return bytes([code << 5 | count])
    if count < 32 + 256:
        return bytes([code << 5, count - 32])
    return struct.pack("<BH", mega, count)


_EQUAL_NEIGHBOURS = re.compile(rb"\x00{2,}")


def _runs(row: bytes, bpx: int, width: int) -> list[tuple[int, int]]:
    """(first pixel, count) of each run of three or more equal pixels in ``row``, found without a Python loop
    over the pixels: byte i of ``same`` is 0 exactly when pixels i and i + 1 are equal."""
    if width < 3:
        return []
    differ = (int.from_bytes(row[:-bpx], "little") ^ int.from_bytes(row[bpx:], "little")).to_bytes(
        len(row) - bpx, "little")
    lanes = 0
    for channel in range(bpx):
        lanes |= int.from_bytes(differ[channel::bpx], "little")
    same = lanes.to_bytes(width - 1, "little")
    return [(m.start(), m.end() - m.start() + 1) for m in _EQUAL_NEIGHBOURS.finditer(same)]


def rle_encode(rows: list[bytes], bpp: int) -> bytes:
    """Interleaved RLE of bottom-up ``rows`` (each the same whole number of pixels), using three orders:
    a background run for rows equal to the row above (never two background runs in a row, which would
    insert a foreground pixel), colour runs for three or more equal pixels, colour images for the rest."""
    bpx = bytes_per_pixel(bpp)
    width = len(rows[0]) // bpx
    out = bytearray()
    pending = 0  # pixels of rows equal to the one above, not yet written

    def colours(row: bytes) -> None:
        literal_start = 0
        for start, count in _runs(row, bpx, width):
            if literal_start < start:
                literal(row, literal_start, start)
            for piece_start in range(0, count, 0xFFFF):
                out.extend(_order(_REGULAR_COLOR_RUN, _MEGA_COLOR_RUN, min(0xFFFF, count - piece_start)))
                out.extend(row[start * bpx:(start + 1) * bpx])
            literal_start = start + count
        if literal_start < width:
            literal(row, literal_start, width)

    def literal(row: bytes, start: int, end: int) -> None:
        for piece in range(start, end, 0xFFFF):
            stop = min(end, piece + 0xFFFF)
            out.extend(_order(_REGULAR_COLOR_IMAGE, _MEGA_COLOR_IMAGE, stop - piece))
            out.extend(row[piece * bpx:stop * bpx])

    for r, row in enumerate(rows):
        if r and row == rows[r - 1] and pending + width <= 0xFFFF:
            pending += width
            continue
        if pending:
            out.extend(_order(_REGULAR_BG_RUN, _MEGA_BG, pending))
            pending = 0
        colours(row)
    if pending:
        out.extend(_order(_REGULAR_BG_RUN, _MEGA_BG, pending))
    return bytes(out)


def _fix_rectangles(records: list[bytes], stats: dict[str, int]) -> list[bytes] | None:
    """The rewritten list of records, or None when none changed."""
    budget = MAX_DECODED_PER_PDU
    changed = False
    out: list[bytes] = []
    for rect in records:
        fixed = fix_rectangle(rect, budget)
        if fixed is None:
            out.append(rect)
            continue
        width, height, bpp = RECT_HEADER.unpack_from(rect, 0)[4:7]
        budget -= width * height * bytes_per_pixel(bpp)
        stats["rectangles_fixed"] += 1
        changed = True
        out.extend(fixed)
    return out if changed else None


def _pack(records: list[bytes], limit: int) -> list[list[bytes]]:
    groups: list[list[bytes]] = []
    size = limit
    for record in records:
        if size + len(record) > limit or len(groups[-1]) == 0xFFFF:
            groups.append([])
            size = 4
        groups[-1].append(record)
        size += len(record)
    return groups


def _bitmap_update(records: list[bytes]) -> bytes:
    return struct.pack("<HH", UPDATETYPE_BITMAP, len(records)) + b"".join(records)


# --- framing ---------------------------------------------------------------------------------------------
def _per_length(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else struct.pack(">H", 0x8000 | n)


class ServerBitmapFix:
    """One direction (server to client) of one connection's plaintext RDP, after the TLS handshake.

    ``feed(chunk)`` returns the bytes to forward now; a PDU split across chunks is held until complete.
    ``stats`` counts what was seen and rewritten.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._io_channel: int | None = None
        self.stats = {"pdus": 0, "bitmap_pdus": 0, "rectangles_fixed": 0, "pdus_rewritten": 0}

    @property
    def pending(self) -> int:
        """Bytes held back: the start of an incomplete PDU (at most 65535)."""
        return len(self._buffer)

    def flush(self) -> bytes:
        """At the end of the stream: the bytes of an incomplete PDU still held, unchanged (the peer will not
        make sense of them either, but nothing is swallowed)."""
        held = bytes(self._buffer)
        self._buffer.clear()
        return held

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to forward for ``chunk``: every PDU it completes, rewritten where needed."""
        self._buffer += chunk
        out = bytearray()
        buf = self._buffer
        pos = 0
        while True:
            length = self._pdu_length(buf, pos)
            if length is None or len(buf) - pos < length:
                break
            pdu = bytes(buf[pos:pos + length])
            pos += length
            self.stats["pdus"] += 1
            out += self._fix_pdu(pdu)
        del buf[:pos]
        return bytes(out)

    @staticmethod
    def _pdu_length(buf: bytearray, pos: int) -> int | None:
        available = len(buf) - pos
        if available < 2:
            return None
        first = buf[pos]
        if first == TPKT_VERSION:
            if available < 4:
                return None
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if length < 4:
                raise RdpStreamError(f"TPKT length {length} is shorter than its header")
            return length
        if first & 0x03 != 0:
            raise RdpStreamError(f"byte 0x{first:02x} starts neither a TPKT nor a fast-path PDU")
        if buf[pos + 1] & 0x80:
            if available < 3:
                return None
            length = ((buf[pos + 1] & 0x7F) << 8) | buf[pos + 2]
            header = 3
        else:
            length = buf[pos + 1]
            header = 2
        if length < header:
            raise RdpStreamError(f"fast-path length {length} is shorter than its header")
        return length

    def _fix_pdu(self, pdu: bytes) -> bytes:
        try:
            if pdu[0] == TPKT_VERSION:
                return self._fix_slow_path(pdu)
            return self._fix_fast_path(pdu)
        except _Malformed:
            return pdu

    # slow path: TPKT, X.224 Data, MCS Send Data Indication, Share Control + Share Data headers, update
    def _fix_slow_path(self, pdu: bytes) -> bytes:
        if len(pdu) < 7 + 8 or pdu[4:7] != X224_DATA or pdu[7] != MCS_SEND_DATA_INDICATION:
            return pdu
        initiator, channel, priority = struct.unpack_from(">HHB", pdu, 8)
        pos = 13
        first = pdu[pos]
        if first & 0x80:  # 15 bits, as xrdp, FreeRDP and IronRDP write and read it
            length = ((first & 0x7F) << 8) | pdu[pos + 1]
            pos += 2
        else:
            length = first
            pos += 1
        if pos + length != len(pdu) or length < 6:
            return pdu
        total, pdu_type, source = struct.unpack_from("<HHH", pdu, pos)
        if total != length:
            return pdu  # not a bare share control PDU (a virtual channel's, a security header)
        if pdu_type & 0x0F == PDUTYPE_DEMANDACTIVEPDU:
            self._io_channel = channel
            return pdu
        if pdu_type & 0x0F != PDUTYPE_DATAPDU or channel != self._io_channel or length < 18 + 4:
            return pdu
        share_id, _pad, stream_id, uncompressed, pdu_type2, compressed_type, compressed_len = struct.unpack_from(
            "<IBBHBBH", pdu, pos + 6)
        if pdu_type2 != PDUTYPE2_UPDATE or compressed_type & PACKET_COMPRESSED:
            return pdu
        update_start = pos + 18
        if struct.unpack_from("<H", pdu, update_start)[0] != UPDATETYPE_BITMAP:
            return pdu
        self.stats["bitmap_pdus"] += 1
        spans = _parse_rectangles(pdu, update_start)
        records = _fix_rectangles([pdu[a:b] for a, b in spans], self.stats)
        if records is None:
            return pdu
        self.stats["pdus_rewritten"] += 1
        out = bytearray()
        for group in _pack(records, MAX_PAYLOAD - 18):
            update = _bitmap_update(group)
            new_total = 18 + len(update)
            delta = new_total - total
            share = struct.pack("<HHH", new_total, pdu_type, source) + struct.pack(
                "<IBBHBBH", share_id, _pad, stream_id, max(0, uncompressed + delta) & 0xFFFF, pdu_type2,
                compressed_type, (compressed_len + delta) & 0xFFFF if compressed_len else 0)
            user_data = share + update
            mcs = struct.pack(">BHHB", MCS_SEND_DATA_INDICATION, initiator, channel, priority) + _per_length(
                len(user_data))
            body = X224_DATA + mcs + user_data
            out += struct.pack(">BBH", TPKT_VERSION, 0, 4 + len(body)) + body
        return bytes(out)

    # fast path: fpOutputHeader, length, then updates (updateHeader, [compressionFlags], size, data)
    def _fix_fast_path(self, pdu: bytes) -> bytes:
        header = pdu[0]
        if header >> 6:
            return pdu  # encrypted or checksummed: not on a TLS connection
        pos = 3 if pdu[1] & 0x80 else 2
        updates: list[tuple[bytes, bytes | None]] = []  # (raw update, its records if a bitmap update)
        changed = False
        while pos < len(pdu):
            update_header = pdu[pos]
            start = pos
            pos += 1
            compression = (update_header >> 6) & 0x3
            if compression & FASTPATH_OUTPUT_COMPRESSION_USED:
                pos += 1
            if pos + 2 > len(pdu):
                raise _Malformed
            size = struct.unpack_from("<H", pdu, pos)[0]
            pos += 2
            if pos + size > len(pdu):
                raise _Malformed
            data = pdu[pos:pos + size]
            pos += size
            raw = pdu[start:pos]
            code = update_header & 0x0F
            fragmentation = (update_header >> 4) & 0x3
            if code == FASTPATH_UPDATETYPE_BITMAP and fragmentation == FASTPATH_FRAGMENT_SINGLE and not compression:
                self.stats["bitmap_pdus"] += 1
                spans = _parse_rectangles(data, 0)
                records = _fix_rectangles([data[a:b] for a, b in spans], self.stats)
                if records is not None:
                    changed = True
                    updates.append((raw, records))
                    continue
            updates.append((raw, None))
        if not changed:
            return pdu
        self.stats["pdus_rewritten"] += 1
        pieces: list[bytes] = []
        for raw, records in updates:
            if records is None:
                pieces.append(raw)
                continue
            for group in _pack(records, MAX_PAYLOAD - 3):
                update = _bitmap_update(group)
                pieces.append(struct.pack("<BH", FASTPATH_UPDATETYPE_BITMAP, len(update)) + update)
        out = bytearray()
        group_pieces: list[bytes] = []
        size = 0
        for piece in pieces + [b""]:
            if piece and size + len(piece) <= MAX_PAYLOAD and group_pieces:
                group_pieces.append(piece)
                size += len(piece)
                continue
            if group_pieces:
                payload = b"".join(group_pieces)
                length = 3 + len(payload)
                out += bytes([header & 0x3C]) + struct.pack(">H", 0x8000 | length) + payload
            group_pieces = [piece] if piece else []
            size = len(piece)
        return bytes(out)
