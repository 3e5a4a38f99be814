"""Icons for the feed: checking what admins upload, converting it, and our default icons.

MS-TSWP clients want each resource's icon twice: the raw .ico (IconRaw) and a 32x32 .png (Icon32)
(PROTOCOLS.md §3.4). Admins may upload either format; anything else is refused. Uploaded bytes are
untrusted, so image dimensions are checked from the headers before Pillow decodes any pixels: a
small compressed file must not expand into a huge bitmap.

Pure functions over bytes.
"""
from __future__ import annotations

import io
import logging
import struct
from functools import lru_cache

from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

PNG_CONTENT_TYPE = "image/png"
ICO_CONTENT_TYPE = "image/x-icon"
MAX_ICON_BYTES = 256 * 1024
MAX_PNG_SIDE = 1024
MAX_ICO_FRAMES = 32
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
DESKTOP = "desktop"
REMOTEAPP = "remoteapp"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ICO_HEADER = b"\x00\x00\x01\x00"


class IconError(ValueError):
    """Bytes that are not an icon we accept; the message says why, for the admin."""


def _png_size(data: bytes) -> tuple[int, int]:
    # The IHDR chunk always comes first: length, "IHDR", width, height.
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise IconError("The PNG image is damaged (no image header).")
    return struct.unpack(">II", data[16:24])


def _ico_frame_sizes(data: bytes) -> list[tuple[int, int]]:
    """The real size of every image in an .ico, read from the file's own headers."""
    if len(data) < 6:
        raise IconError("The ICO file is damaged (too short).")
    count = struct.unpack("<H", data[4:6])[0]
    if not 1 <= count <= MAX_ICO_FRAMES:
        raise IconError(f"The ICO file must hold 1 to {MAX_ICO_FRAMES} images, not {count}.")
    if len(data) < 6 + 16 * count:
        raise IconError("The ICO file is damaged (its directory is cut short).")
    sizes = []
    for index in range(count):
        entry = data[6 + 16 * index: 22 + 16 * index]
        length, offset = struct.unpack("<II", entry[8:16])
        if length == 0 or offset + length > len(data):
            raise IconError("The ICO file is damaged (an image lies outside the file).")
        frame = data[offset:offset + length]
        if frame.startswith(_PNG_SIGNATURE):
            width, height = _png_size(frame)
        else:
            if len(frame) < 12 or struct.unpack("<I", frame[:4])[0] < 40:
                raise IconError("The ICO file is damaged (an image has no bitmap header).")
            width, signed_height = struct.unpack("<ii", frame[4:12])
            height = abs(signed_height) // 2  # a bitmap frame stores the image and its mask
        if not (1 <= width <= 256 and 1 <= height <= 256):
            raise IconError(f"An image in the ICO file is {width}x{height}; icons are at most 256x256.")
        sizes.append((width, height))
    return sizes


def validate_icon(data: bytes) -> str:
    """The content type of an uploaded icon, after checking it is a real PNG or ICO image that
    decodes, within ``MAX_ICON_BYTES`` and sensible dimensions. Raises IconError otherwise."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise IconError("The icon is empty.")
    if len(data) > MAX_ICON_BYTES:
        raise IconError(f"The icon is {len(data)} bytes; the limit is {MAX_ICON_BYTES // 1024} KiB.")
    data = bytes(data)
    if data.startswith(_PNG_SIGNATURE):
        width, height = _png_size(data)
        if not (1 <= width <= MAX_PNG_SIDE and 1 <= height <= MAX_PNG_SIDE):
            raise IconError(f"The PNG image is {width}x{height}; icons are at most {MAX_PNG_SIDE}x{MAX_PNG_SIDE}.")
        _decode(data, "PNG", sizes=None)
        return PNG_CONTENT_TYPE
    if data.startswith(_ICO_HEADER):
        _decode(data, "ICO", sizes=_ico_frame_sizes(data))
        return ICO_CONTENT_TYPE
    raise IconError("Only PNG and ICO images are accepted as icons.")


def _decode(data: bytes, expected_format: str, sizes: list[tuple[int, int]] | None) -> None:
    """Decode every image in ``data`` fully, so a damaged file is refused now, not in a client."""
    try:
        with Image.open(io.BytesIO(data), formats=[expected_format]) as image:
            image.verify()  # checks PNG chunk CRCs; the image must be reopened afterwards
        with Image.open(io.BytesIO(data), formats=[expected_format]) as image:
            if sizes is None:
                image.load()
            else:
                for size in set(image.info.get("sizes", ())):
                    image.size = size  # Pillow's way to pick one image of an .ico
                    image.load()
    except IconError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        logger.info("refused icon: %s", exc)
        raise IconError(f"The {expected_format} image is damaged and cannot be read.") from None


def _open_largest(data: bytes) -> Image.Image:
    validate_icon(data)
    image = Image.open(io.BytesIO(data), formats=["PNG", "ICO"])  # an .ico opens at its largest size
    image.load()
    return image.convert("RGBA")


def _square(image: Image.Image, side: int) -> Image.Image:
    """``image`` scaled to fit ``side`` x ``side``, centred on a transparent square."""
    scale = side / max(image.size)
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(image.resize((width, height), Image.Resampling.LANCZOS),
                 ((side - width) // 2, (side - height) // 2))
    return canvas


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _ico_bytes(image: Image.Image) -> bytes:
    side = min(256, max(32, max(image.size)))
    base = _square(image, side)
    buffer = io.BytesIO()
    base.save(buffer, format="ICO", sizes=[(s, s) for s in ICO_SIZES if s <= side])
    return buffer.getvalue()


def icon_png_32(data: bytes) -> bytes:
    """The 32x32 PNG (Icon32) of an uploaded PNG or ICO."""
    return _png_bytes(_square(_open_largest(data), 32))


def icon_ico(data: bytes) -> bytes:
    """The .ico (IconRaw) of an uploaded icon: an uploaded .ico as it is (its hand-made small sizes
    are better than ours), a PNG converted to an .ico of the standard sizes up to its own."""
    if validate_icon(data) == ICO_CONTENT_TYPE:
        return bytes(data)
    return _ico_bytes(_open_largest(data))


# --- defaults -------------------------------------------------------------------------------


def _draw_default(kind: str) -> Image.Image:
    """A plain, recognisable 256x256 picture: a monitor for desktops, a window for RemoteApps."""
    image = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    frame, screen, accent = (45, 55, 72, 255), (66, 135, 245, 255), (235, 240, 248, 255)
    if kind == DESKTOP:
        draw.rounded_rectangle((16, 32, 240, 184), radius=14, fill=frame)
        draw.rectangle((30, 46, 226, 170), fill=screen)
        draw.polygon([(108, 184), (148, 184), (158, 218), (98, 218)], fill=frame)
        draw.rounded_rectangle((70, 214, 186, 230), radius=6, fill=frame)
    elif kind == REMOTEAPP:
        draw.rounded_rectangle((20, 36, 236, 220), radius=14, fill=frame)
        draw.rectangle((32, 76, 224, 208), fill=accent)
        for x in (186, 206):
            draw.ellipse((x - 8, 48, x + 8, 64), fill=accent)
        draw.rounded_rectangle((52, 100, 204, 118), radius=6, fill=screen)
        draw.rounded_rectangle((52, 132, 168, 150), radius=6, fill=screen)
        draw.rounded_rectangle((52, 164, 184, 182), radius=6, fill=screen)
    else:
        raise ValueError(f"no default icon for {kind!r}; use {DESKTOP!r} or {REMOTEAPP!r}")
    return image


@lru_cache(maxsize=4)
def default_icon_ico(kind: str) -> bytes:
    """Our .ico for a desktop or RemoteApp whose admin gave no icon."""
    return _ico_bytes(_draw_default(kind))


@lru_cache(maxsize=4)
def default_icon_png_32(kind: str) -> bytes:
    """Our 32x32 PNG for a desktop or RemoteApp whose admin gave no icon."""
    return _png_bytes(_square(_draw_default(kind), 32))


def resource_icon_ico(icon: bytes | None, kind: str) -> bytes:
    """The .ico to serve for a resource: its own icon, or ours when it has none or it is unreadable."""
    if icon:
        try:
            return icon_ico(bytes(icon))
        except IconError as exc:
            logger.warning("stored %s icon refused, serving the default: %s", kind, exc)
    return default_icon_ico(kind)


def resource_icon_png_32(icon: bytes | None, kind: str) -> bytes:
    """The 32x32 PNG to serve for a resource: from its own icon, or ours."""
    if icon:
        try:
            return icon_png_32(bytes(icon))
        except IconError as exc:
            logger.warning("stored %s icon refused, serving the default: %s", kind, exc)
    return default_icon_png_32(kind)
