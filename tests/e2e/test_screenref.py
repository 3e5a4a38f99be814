"""testbed.screenref: the reference picture and the pixel count that tells a sheared canvas from a right one.

The sheared canvas is made the way IronRDP web 0.7.0 draws a padded rectangle: rows of the padded width
read with the destination width as the stride (issue 14)."""
from __future__ import annotations

import pytest

from testbed import screenref
from testbed.screenref import FIRST_BLOCKS, SECOND_BLOCKS, mismatches, reference

W, H = 1024, 768


def rgba_of(rgb: bytes) -> bytes:
    out = bytearray(len(rgb) // 3 * 4)
    for channel in range(3):
        out[channel::4] = rgb[channel::3]
    out[3::4] = b"\xff" * (len(rgb) // 3)
    return bytes(out)


def sheared(blocks: tuple[screenref.Block, ...]) -> bytes:
    """What the unfixed client draws: each block's rows, padded to a multiple of 4 pixels, strided by its width."""
    image = bytearray(reference(W, H, ()))
    truth = reference(W, H, blocks)
    for b in blocks:
        padded = b.width + (-b.width) % 4
        rows = [truth[((b.y + r) * W + b.x) * 3:((b.y + r) * W + b.x + b.width) * 3]
                + truth[((b.y + r) * W + b.x + b.width - 1) * 3:((b.y + r) * W + b.x + b.width) * 3]
                * (padded - b.width) for r in range(b.height)]  # RLE padding repeats the last pixel
        data = b"".join(reversed(rows))  # bottom-up
        chunks = [data[i:i + 3 * b.width] for i in range(0, len(data) - 3 * b.width + 1, 3 * b.width)]
        for r, chunk in enumerate(reversed(chunks)):
            if b.y + r < H:
                start = ((b.y + r) * W + b.x) * 3
                image[start:start + len(chunk)] = chunk
    return bytes(image)


def test_the_reference_itself_and_a_sheared_copy():
    assert mismatches(rgba_of(reference(W, H, FIRST_BLOCKS)), W, H, FIRST_BLOCKS) == 0
    assert mismatches(rgba_of(sheared(FIRST_BLOCKS)), W, H, FIRST_BLOCKS) > 1000
    assert mismatches(rgba_of(reference(W, H, FIRST_BLOCKS)), W, H, FIRST_BLOCKS + SECOND_BLOCKS) > 0


def test_every_block_has_a_width_xrdp_pads_and_exact_16_bpp_colours():
    for b in FIRST_BLOCKS + SECOND_BLOCKS:
        assert b.width % 4 and b.x % 2 == 1
        for value in b.colour + screenref.BACKGROUND:
            assert value in (0, 255, 0x84, 0x82)


def test_the_tk_script_places_every_block():
    script = screenref.tk_script(6)
    for b in FIRST_BLOCKS + SECOND_BLOCKS:
        assert f"{{{b.x} {b.y} {b.width} {b.height} {b.tk_colour}}}" in script
    assert "after 6000" in script


def test_a_canvas_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError):
        mismatches(b"\0" * 12, W, H, FIRST_BLOCKS)
