"""Feed icons: what uploads are accepted, the conversions clients need, and our defaults."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from feed.icons import (
    DESKTOP,
    ICO_CONTENT_TYPE,
    MAX_ICON_BYTES,
    PNG_CONTENT_TYPE,
    REMOTEAPP,
    IconError,
    default_icon_ico,
    default_icon_png_32,
    icon_ico,
    icon_png_32,
    resource_icon_ico,
    resource_icon_png_32,
    validate_icon,
)


def _image(size=(64, 64), color=(200, 30, 30, 255)) -> Image.Image:
    return Image.new("RGBA", size, color)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png(size=(64, 64)) -> bytes:
    return _encode(_image(size), "PNG")


def _ico(sizes=((16, 16), (32, 32), (48, 48)), **options) -> bytes:
    return _encode(_image((48, 48)), "ICO", sizes=list(sizes), **options)


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: decoding it would take gigabytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + _png_chunk(b"IEND", b""))


# --- accepted --------------------------------------------------------------------------------


def test_a_png_is_accepted_as_image_png():
    assert validate_icon(_png()) == PNG_CONTENT_TYPE


def test_an_ico_with_png_frames_is_accepted():
    assert validate_icon(_ico()) == ICO_CONTENT_TYPE


def test_an_ico_with_bitmap_frames_is_accepted():
    assert validate_icon(_ico(bitmap_format="bmp")) == ICO_CONTENT_TYPE


# --- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    _encode(_image().convert("RGB"), "JPEG"),
    _encode(_image(), "GIF"),
    _encode(_image(), "BMP"),
    b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    b"MZ\x90\x00 not an image",
])
def test_other_formats_are_refused(data):
    with pytest.raises(IconError, match="Only PNG and ICO"):
        validate_icon(data)


def test_empty_and_oversized_files_are_refused():
    with pytest.raises(IconError, match="empty"):
        validate_icon(b"")
    with pytest.raises(IconError, match="limit"):
        validate_icon(_png() + b"\0" * MAX_ICON_BYTES)


def test_a_png_larger_than_the_limit_in_pixels_is_refused_before_decoding():
    with pytest.raises(IconError, match="50000x50000"):
        validate_icon(_png_claiming(50000, 50000))


def test_a_png_with_a_broken_checksum_is_refused():
    data = bytearray(_png())
    data[-20] ^= 0xFF  # inside the IDAT chunk

    with pytest.raises(IconError, match="damaged"):
        validate_icon(bytes(data))


def test_a_truncated_png_is_refused():
    with pytest.raises(IconError, match="damaged"):
        validate_icon(_png()[:60])


def test_an_ico_frame_outside_the_file_is_refused():
    data = bytearray(_ico())
    data[18:22] = struct.pack("<I", len(data))  # the first frame's offset, now past the end

    with pytest.raises(IconError, match="outside the file"):
        validate_icon(bytes(data))


def test_an_ico_hiding_a_huge_png_frame_is_refused():
    huge = _png_claiming(9000, 9000)
    directory = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(huge), 22)
    data = b"\x00\x00\x01\x00" + struct.pack("<H", 1) + directory + huge

    with pytest.raises(IconError, match="9000x9000"):
        validate_icon(data)


def test_an_ico_without_images_is_refused():
    with pytest.raises(IconError, match="1 to"):
        validate_icon(b"\x00\x00\x01\x00\x00\x00")


# --- conversions -----------------------------------------------------------------------------


def test_a_wide_png_becomes_a_centred_32x32_png():
    png = icon_png_32(_png((100, 50)))

    image = _open(png)
    assert (image.format, image.size) == ("PNG", (32, 32))
    assert image.convert("RGBA").getpixel((16, 0))[3] == 0  # transparent band above
    assert image.convert("RGBA").getpixel((16, 16))[:3] == (200, 30, 30)


def test_an_ico_becomes_a_32x32_png():
    image = _open(icon_png_32(_ico()))

    assert (image.format, image.size) == ("PNG", (32, 32))


def test_a_png_becomes_an_ico_with_the_standard_sizes_up_to_its_own():
    ico = icon_ico(_png((64, 64)))

    image = Image.open(io.BytesIO(ico))
    assert image.format == "ICO"
    assert image.info["sizes"] == {(16, 16), (24, 24), (32, 32), (48, 48), (64, 64)}


def test_a_small_png_still_gives_a_32_pixel_ico():
    assert (32, 32) in Image.open(io.BytesIO(icon_ico(_png((20, 20))))).info["sizes"]


def test_an_uploaded_ico_is_served_as_it_is():
    original = _ico()

    assert icon_ico(original) == original


def test_conversions_refuse_what_validation_refuses():
    with pytest.raises(IconError):
        icon_png_32(b"GIF89a")
    with pytest.raises(IconError):
        icon_ico(_png_claiming(50000, 50000))


# --- defaults --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [DESKTOP, REMOTEAPP])
def test_the_default_icons_are_valid_ico_and_32px_png(kind):
    assert validate_icon(default_icon_ico(kind)) == ICO_CONTENT_TYPE
    assert validate_icon(default_icon_png_32(kind)) == PNG_CONTENT_TYPE
    assert _open(default_icon_png_32(kind)).size == (32, 32)
    assert {(16, 16), (32, 32), (256, 256)} <= Image.open(io.BytesIO(default_icon_ico(kind))).info["sizes"]


def test_desktops_and_remoteapps_get_different_default_icons():
    assert default_icon_png_32(DESKTOP) != default_icon_png_32(REMOTEAPP)


def test_there_is_no_default_for_an_unknown_kind():
    with pytest.raises(ValueError, match="no default icon"):
        default_icon_ico("printer")


def test_a_resource_without_icon_or_with_a_broken_one_gets_the_default():
    assert resource_icon_ico(None, DESKTOP) == default_icon_ico(DESKTOP)
    assert resource_icon_png_32(b"", REMOTEAPP) == default_icon_png_32(REMOTEAPP)
    assert resource_icon_png_32(b"\x89PNG\r\n\x1a\nbroken", REMOTEAPP) == default_icon_png_32(REMOTEAPP)


def test_a_resource_with_its_own_icon_gets_it_converted():
    assert resource_icon_png_32(_png((64, 64)), REMOTEAPP) == icon_png_32(_png((64, 64)))
    assert resource_icon_ico(memoryview(_ico()).tobytes(), REMOTEAPP) == _ico()
