"""wire.rdpbitmap: padded bitmap rectangles re-presented for IronRDP web 0.7.0, everything else untouched.

Real PDUs from xrdp (testbed/rdpbitmap_vectors.py, expected rewrites derived with FreeRDP's decoder),
synthetic PDUs for the paths xrdp does not take here (raw data, fast-path bitmaps, bands), a differential
test of the Interleaved RLE decoder against FreeRDP 3.10's encoder when libfreerdp3 is installed, and
Hypothesis over arbitrary bytes and splits.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed import rdpbitmap_vectors as v
from wire import rdpbitmap
from wire.rdpbitmap import RdpStreamError, ServerBitmapFix, rle_decode

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IO_CHANNEL = 1003


def feed_all(pieces: list[bytes], fix: ServerBitmapFix | None = None) -> bytes:
    fix = fix or ServerBitmapFix()
    return b"".join(fix.feed(piece) for piece in pieces)


def rectangles(pdu: bytes) -> list[tuple[tuple[int, ...], bytes]]:
    """The TS_BITMAP_DATA records of one slow-path bitmap PDU, checking every length on the way."""
    assert pdu[0] == 3 and struct.unpack(">H", pdu[2:4])[0] == len(pdu)
    assert pdu[4:8] == b"\x02\xf0\x80\x68"
    pos = 13
    if pdu[pos] & 0x80:
        mcs_length = struct.unpack(">H", pdu[pos:pos + 2])[0] & 0x7FFF
        pos += 2
    else:
        mcs_length = pdu[pos]
        pos += 1
    assert pos + mcs_length == len(pdu)
    assert struct.unpack_from("<H", pdu, pos)[0] == mcs_length  # share control totalLength
    assert pdu[pos + 14] == 2 and struct.unpack_from("<H", pdu, pos + 18)[0] == 1  # update, bitmap
    count = struct.unpack_from("<H", pdu, pos + 20)[0]
    pos += 22
    out = []
    for _ in range(count):
        header = struct.unpack_from("<9H", pdu, pos)
        out.append((header, pdu[pos + 18:pos + 18 + header[8]]))
        pos += 18 + header[8]
    assert pos == len(pdu)
    return out


def split_pdus(stream: bytes) -> list[bytes]:
    pdus, pos = [], 0
    while pos < len(stream):
        length = struct.unpack(">H", stream[pos + 2:pos + 4])[0]
        pdus.append(stream[pos:pos + length])
        pos += length
    return pdus


# --- what a client that strides rows by the destination width draws ------------------------------------------
def decoded_rows(header: tuple[int, ...], body: bytes) -> list[bytes]:
    """The rows of one record, top-down, decoded by our decoder and (when installed) FreeRDP's, which must agree."""
    left, top, right, bottom, width, height, bpp, flags, length = header
    row = width * 2
    if flags & 1:
        assert bpp == 16 and flags & 0x400
        data = rle_decode(body, width, height, bpp)
        if FREERDP is not None:
            assert data == freerdp_decode(body, width, height)
    else:
        stride = (row + 3) & ~3
        assert len(body) == stride * height
        data = b"".join(body[r * stride:r * stride + row] for r in range(height))
    return [data[r * row:(r + 1) * row] for r in reversed(range(height))]


def drawn(stream: bytes) -> dict[tuple[int, int], bytes]:
    """The pixels the slow-path bitmap PDUs of ``stream`` draw on IronRDP web 0.7.0, which strides rows by the
    destination width: only right for records whose width is the destination width (asserted)."""
    screen = {}
    for pdu in split_pdus(stream):
        for header, body in rectangles(pdu):
            left, top, right, bottom, width = header[:5]
            assert width == right - left + 1
            for y, row in enumerate(decoded_rows(header, body), start=top):
                for x in range(width):
                    screen[(left + x, y)] = row[2 * x:2 * x + 2]
    return screen


# --- real xrdp PDUs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("captured, expected", [(v.GREEN_BLOCK, v.GREEN_BLOCK_FIXED), (v.GLYPH, v.GLYPH_FIXED),
                                                (v.BUTTON, v.BUTTON_FIXED)], ids=["block", "glyph", "button"])
def test_padded_rectangles_from_xrdp_are_sent_at_the_destination_width(captured, expected):
    fix = ServerBitmapFix()
    assert fix.feed(v.DEMAND_ACTIVE) == v.DEMAND_ACTIVE
    out = fix.feed(captured)
    assert fix.stats["rectangles_fixed"] == 1 and fix.pending == 0
    assert drawn(out) == drawn(expected)  # the pixels FreeRDP decoded from xrdp's PDU, cropped
    assert all(header[7] == 0x401 for header, _ in rectangles(out))  # still RLE, as xrdp sent it
    assert len(out) < 2 * len(captured)


def test_the_green_block_carries_the_colours_the_session_drew():
    """Independent of any decoder: the session drew 6 black then 7 green (RGB565 0x07E0) columns, 41 rows."""
    out = feed_all([v.DEMAND_ACTIVE, v.GREEN_BLOCK])[len(v.DEMAND_ACTIVE):]
    (header, body), = rectangles(out)
    assert header[:8] == (203, 77, 215, 117, 13, 41, 16, 0x401)
    assert decoded_rows(header, body) == [b"\x00\x00" * 6 + struct.pack("<H", 0x07E0) * 7] * 41
    (original, _), = rectangles(v.GREEN_BLOCK)
    assert original[4] == 16 and original[7] == 0x401  # xrdp padded the width to 16 and compressed it


@pytest.mark.parametrize("pdu", [v.LICENSE, v.FULL_WIDTH, v.FAST_PATH], ids=["license", "full-width", "fast-path"])
def test_other_pdus_pass_byte_for_byte(pdu):
    assert feed_all([v.DEMAND_ACTIVE, pdu]) == v.DEMAND_ACTIVE + pdu


def test_nothing_is_rewritten_before_the_demand_active_names_the_io_channel():
    assert feed_all([v.GREEN_BLOCK]) == v.GREEN_BLOCK


def test_the_output_is_the_same_however_the_stream_is_split():
    head = v.LICENSE + v.DEMAND_ACTIVE + v.FAST_PATH
    stream = head + v.GLYPH + v.FULL_WIDTH + v.GREEN_BLOCK + v.BUTTON
    expected = feed_all([stream])
    assert expected.startswith(head)
    assert drawn(expected[len(head):]) == drawn(v.GLYPH_FIXED + v.FULL_WIDTH + v.GREEN_BLOCK_FIXED + v.BUTTON_FIXED)
    assert feed_all([bytes([b]) for b in stream]) == expected
    for cut in range(0, len(stream), 7):
        fix = ServerBitmapFix()
        first = fix.feed(stream[:cut])
        assert fix.pending < 65536
        assert first + fix.feed(stream[cut:]) == expected
        assert fix.flush() == b""
    fix = ServerBitmapFix()
    assert fix.feed(stream[:-5]) + fix.flush() == feed_all([stream[:-len(v.BUTTON)]]) + v.BUTTON[:-5]


# --- synthetic PDUs ---------------------------------------------------------------------------------------
def slow_path(update: bytes, channel: int = IO_CHANNEL) -> bytes:
    share = struct.pack("<HHH", 18 + len(update), 0x17, 1002) + struct.pack("<IBBHBBH", 0x103EA, 0, 1,
                                                                            18 + len(update), 2, 0, 0)
    user = share + update
    length = bytes([len(user)]) if len(user) < 0x80 else struct.pack(">H", 0x8000 | len(user))
    body = b"\x02\xf0\x80" + struct.pack(">BHHB", 0x68, 1002, channel, 0x70) + length + user
    return struct.pack(">BBH", 3, 0, 4 + len(body)) + body


def demand_active(channel: int = IO_CHANNEL) -> bytes:
    user = struct.pack("<HHH", 6 + 4, 0x11, 1002) + b"\0" * 4
    body = b"\x02\xf0\x80" + struct.pack(">BHHB", 0x68, 1002, channel, 0x70) + bytes([len(user)]) + user
    return struct.pack(">BBH", 3, 0, 4 + len(body)) + body


def bitmap_update(*records: bytes) -> bytes:
    return struct.pack("<HH", 1, len(records)) + b"".join(records)


def raw_record(left: int, top: int, dest_w: int, width: int, rows: list[bytes], bpp: int) -> bytes:
    data = b"".join(rows)
    return struct.pack("<9H", left, top, left + dest_w - 1, top + len(rows) - 1, width, len(rows), bpp, 0,
                       len(data)) + data


def test_raw_24_bpp_rows_are_re_strided_and_keep_four_byte_alignment():
    # 5 visible pixels, padded to 8 (xrdp's e = 3), 3 rows bottom-up; padding pixels are zero
    rows = [bytes(range(16 * r, 16 * r + 15)) + b"\0" * 9 for r in range(3)]
    out = feed_all([demand_active(), slow_path(bitmap_update(raw_record(11, 21, 5, 8, rows, 24)))])
    (header, data), = rectangles(out[len(demand_active()):])
    assert header == (11, 21, 15, 23, 5, 3, 24, 0, 48)
    assert data == b"".join(bytes(range(16 * r, 16 * r + 15)) + b"\0" for r in range(3))


def test_a_rectangle_too_big_for_one_pdu_is_split_into_bands_that_cover_it_exactly():
    width, dest_w, height = 1000, 997, 15  # 30 kB of 16-bpp pixels that do not compress
    # row r (bottom-up) is one MEGA_MEGA_COLOR_IMAGE (0xF4, a 16-bit count, the pixels): r * 1000 + x
    pixel = lambda x, r: struct.pack("<H", r * 1000 + x)  # noqa: E731
    rle = b"".join(b"\xf4" + struct.pack("<H", width) + b"".join(pixel(x, r) for x in range(width))
                   for r in range(height))
    big = struct.pack("<9H", 5, 100, 5 + dest_w - 1, 100 + height - 1, width, height, 16, 0x401, len(rle)) + rle
    unrelated = raw_record(0, 0, 8, 8, [b"\x01\x02" * 8] * 2, 16)  # not padded: copied as it is
    out = feed_all([demand_active(), slow_path(bitmap_update(unrelated, big))])
    pdus = split_pdus(out[len(demand_active()):])
    assert len(pdus) > 1 and all(len(pdu) <= rdpbitmap.MAX_PAYLOAD + 32 for pdu in pdus)
    records = [record for pdu in pdus for record in rectangles(pdu)]
    assert records[0][0][:8] == (0, 0, 7, 1, 8, 2, 16, 0) and records[0][1] == b"\x01\x02" * 16
    seen = {}
    for header, body in records[1:]:
        left, top, right, bottom, w, h, bpp, flags, length = header
        assert (left, right, w, bpp, flags, bottom - top + 1) == (5, 5 + dest_w - 1, dest_w, 16, 0x401, h)
        for y, row in enumerate(decoded_rows(header, body), start=top):
            assert y not in seen
            seen[y] = row
    assert sorted(seen) == list(range(100, 100 + height))
    for y, row in seen.items():
        r = 100 + height - 1 - y
        assert row == b"".join(pixel(x, r) for x in range(dest_w))


def fast_path(*updates: bytes) -> bytes:
    payload = b"".join(updates)
    return bytes([0]) + struct.pack(">H", 0x8000 | (3 + len(payload))) + payload


def test_fast_path_bitmap_updates_are_rewritten_in_place_among_the_other_updates():
    pointer = bytes([0x0B]) + struct.pack("<H", 2) + b"\x05\x00"
    rows = [b"\xaa\xbb" * 3 + b"\0\0"] * 2
    bitmap = bitmap_update(raw_record(1, 2, 3, 4, rows, 16))
    pdu = fast_path(pointer, bytes([0x01]) + struct.pack("<H", len(bitmap)) + bitmap, pointer)
    out = ServerBitmapFix().feed(pdu)
    fixed = bitmap_update(raw_record(1, 2, 3, 3, [b"\xaa\xbb" * 3 + b"\0\0"] * 2, 16))
    assert out == fast_path(pointer, bytes([0x01]) + struct.pack("<H", len(fixed)) + fixed, pointer)


def test_bulk_compressed_or_fragmented_fast_path_updates_pass_unchanged():
    rows = [b"\xaa\xbb" * 3 + b"\0\0"] * 2
    bitmap = bitmap_update(raw_record(1, 2, 3, 4, rows, 16))
    for header in (0x01 | 0x10, 0x01 | 0x20):  # fragmentation LAST, FIRST
        pdu = fast_path(bytes([header]) + struct.pack("<H", len(bitmap)) + bitmap)
        assert ServerBitmapFix().feed(pdu) == pdu
    compressed = fast_path(bytes([0x81, 0x61]) + struct.pack("<H", len(bitmap)) + bitmap)
    assert ServerBitmapFix().feed(compressed) == compressed


def test_other_channels_and_malformed_rectangles_pass_unchanged():
    rows = [b"\xaa\xbb" * 3 + b"\0\0"] * 2
    record = raw_record(1, 2, 3, 4, rows, 16)
    other_channel = slow_path(bitmap_update(record), channel=1004)
    short_data = slow_path(bitmap_update(record[:-2]))  # bitmapLength says 2 more bytes than the PDU has
    bad_rle = slow_path(bitmap_update(struct.pack("<9H", 1, 2, 3, 3, 4, 1, 16, 0x401, 1) + b"\x60"))
    for pdu in (other_channel, short_data, bad_rle):
        assert feed_all([demand_active(), pdu]) == demand_active() + pdu


@pytest.mark.parametrize("stream", [b"\x01\x02\x03", b"\x03\x00\x00\x02", b"\x00\x01"],
                         ids=["not-rdp", "tpkt-too-short", "fast-path-too-short"])
def test_a_stream_that_is_not_rdp_is_refused(stream):
    with pytest.raises(RdpStreamError):
        ServerBitmapFix().feed(stream)


# --- the RLE decoder against FreeRDP's encoder -------------------------------------------------------------
def freerdp3():
    name = ctypes.util.find_library("freerdp3") or "libfreerdp3.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.bitmap_interleaved_context_new.restype = ctypes.c_void_p
    lib.bitmap_interleaved_context_new.argtypes = [ctypes.c_int]
    lib.bitmap_interleaved_context_free.argtypes = [ctypes.c_void_p]
    lib.interleaved_compress.restype = ctypes.c_int
    lib.interleaved_compress.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_uint32, ctypes.c_uint32,
        ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p,
        ctypes.c_uint32]
    lib.interleaved_decompress.restype = ctypes.c_int
    lib.interleaved_decompress.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
        ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
        ctypes.c_uint32, ctypes.c_void_p]
    return lib


FREERDP = freerdp3()
RGB16 = (16 << 24) | (1 << 16) | (5 << 8) | (6 << 4) | 5  # FreeRDP's PIXEL_FORMAT_RGB16


def freerdp_decode(stream: bytes, width: int, height: int) -> bytes:
    """FreeRDP 3.10's decoding of a 16-bpp Interleaved RLE stream, as bottom-up rows (ours are)."""
    decoded = ctypes.create_string_buffer(width * height * 2)
    decoder = FREERDP.bitmap_interleaved_context_new(0)
    try:
        assert FREERDP.interleaved_decompress(decoder, stream, len(stream), width, height, 16, decoded, RGB16,
                                              width * 2, 0, 0, width, height, None)
    finally:
        FREERDP.bitmap_interleaved_context_free(decoder)
    rows = [decoded.raw[r * width * 2:(r + 1) * width * 2] for r in range(height)]  # FreeRDP's are top-down
    return b"".join(reversed(rows))
blocky_images = st.tuples(st.sampled_from([4, 8, 12, 16, 32, 64]), st.integers(1, 24)).flatmap(
    lambda size: st.tuples(st.just(size), st.lists(
        st.sampled_from([0x0000, 0xFFFF, 0x07E0, 0x8410, 0x1234]) | st.integers(0, 0xFFFF),
        min_size=size[0] * size[1], max_size=size[0] * size[1])))


@pytest.mark.skipif(FREERDP is None, reason="libfreerdp3 is not installed (apt-get install libfreerdp3-3)")
@FUZZ
@given(blocky_images, st.integers(0, 3))
def test_rle_decoder_agrees_with_freerdps_on_what_freerdp_encodes(image, runs):
    """Streams from a real encoder (FreeRDP's, the one xrdp's derives from), decoded by FreeRDP's decoder and
    ours. Compared with each other, not with the image: that encoder is lossy on some dithered rows."""
    (width, height), pixels = image
    # long horizontal runs and repeated rows exercise the run and background orders
    pixels = [pixels[(i // (1 + runs * 3)) % len(pixels)] for i in range(len(pixels))]
    top_down = struct.pack(f"<{len(pixels)}H", *pixels)
    out = ctypes.create_string_buffer(65536)
    size = ctypes.c_uint32(len(out))
    encoder = FREERDP.bitmap_interleaved_context_new(1)
    try:
        assert FREERDP.interleaved_compress(encoder, out, ctypes.byref(size), width, height, top_down, RGB16,
                                            width * 2, 0, 0, None, 16)
    finally:
        FREERDP.bitmap_interleaved_context_free(encoder)
    stream = out.raw[:size.value]
    assert rle_decode(stream, width, height, 16) == freerdp_decode(stream, width, height)


odd_images = st.tuples(st.integers(1, 70), st.integers(1, 12), st.sampled_from([8, 15, 16, 24])).flatmap(
    lambda shape: st.tuples(st.just(shape), st.lists(
        st.lists(st.sampled_from([0, 1, 0xFFFFFF]) | st.integers(0, 0xFFFFFF), min_size=shape[0],
                 max_size=shape[0]), min_size=1, max_size=3)))


@FUZZ
@given(odd_images, st.lists(st.integers(0, 2), min_size=12, max_size=12))
def test_the_encoder_round_trips_through_both_decoders(image, picks):
    """Any width (odd ones included), rows repeated so background runs appear: what rle_encode writes,
    rle_decode and (at 16 bpp, when installed) FreeRDP read back as the same rows."""
    (width, height, bpp), palette = image
    bpx = rdpbitmap.bytes_per_pixel(bpp)
    mask = {8: 0xFF, 15: 0x7FFF, 16: 0xFFFF, 24: 0xFFFFFF}[bpp]
    choices = [b"".join((value & mask).to_bytes(bpx, "little") for value in row) for row in palette]
    rows = [choices[picks[r] % len(choices)] for r in range(height)]
    stream = rdpbitmap.rle_encode(rows, bpp)
    assert rle_decode(stream, width, height, bpp) == b"".join(rows)
    if FREERDP is not None and bpp == 16:
        assert freerdp_decode(stream, width, height) == b"".join(rows)


# --- arbitrary input ----------------------------------------------------------------------------------------
def pieces_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


near_pdus = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda recs: slow_path(bitmap_update(*recs)), st.lists(st.binary(min_size=18, max_size=80), max_size=4)),
    st.builds(lambda header, body: slow_path(bitmap_update(struct.pack("<9H", *header, len(body)) + body)),
              st.tuples(*[st.integers(0, 40)] * 6, st.sampled_from([8, 15, 16, 24, 32]),
                        st.sampled_from([0, 1, 0x401])), st.binary(max_size=120)),
    st.builds(lambda body: fast_path(body), st.binary(max_size=200)),
)


@FUZZ
@given(st.lists(near_pdus, max_size=5), st.lists(st.integers(0, 4000), max_size=8))
def test_any_input_gives_the_same_output_however_split_or_the_documented_error(parts, cuts):
    data = demand_active() + b"".join(parts)
    try:
        whole = ServerBitmapFix().feed(data)
    except RdpStreamError:
        with pytest.raises(RdpStreamError):
            feed_all(pieces_of(data, cuts))
        return
    fix = ServerBitmapFix()
    assert feed_all(pieces_of(data, cuts), fix) == whole
    assert fix.pending < 65536
    # each PDU's growth is bounded by its decoded-pixel budget
    assert len(whole) <= len(data) + fix.stats["pdus"] * (rdpbitmap.MAX_DECODED_PER_PDU + 4096)
