"""A reference picture a test session draws, and the count of canvas pixels that differ from it.

For pixel tests of a remote desktop in the browser (issue 14): the session's only program is ``wish`` (Tk)
running ``tk_script()``, which covers the screen with grey and, ``delay`` seconds later, draws
``FIRST_BLOCKS``; the key ``x`` adds ``SECOND_BLOCKS`` (a change the test types). Every block sits at odd
coordinates with an odd width (never a multiple of 4: the widths xrdp pads) and is black on its left half,
coloured on its right half, so a sheared copy shows a slanted edge; the colours are exact in RGB565 (the
web client's 16 bpp). ``mismatches`` compares a canvas (RGBA bytes, e.g. ``getImageData``) with the
picture those blocks make.

Measured with xrdp 0.9.21.1 (Xvnc), IronRDP web 0.7.0 in headless Chromium, 1024x768: without
``wire.rdpbitmap.ServerBitmapFix`` 8203 pixels differ after the first blocks and 9161 after ``x``; with it, 0.

Needs ``wish`` (Debian: ``apt-get install -y tk``) on the session host.
"""
from __future__ import annotations

from dataclasses import dataclass

INSTALL_HINT = "apt-get install -y --no-install-recommends tk"
BACKGROUND = (0x84, 0x82, 0x84)  # exact in RGB565
BLACK = (0, 0, 0)


@dataclass(frozen=True)
class Block:
    x: int
    y: int
    width: int
    height: int
    colour: tuple[int, int, int]  # the right half; the left width // 2 columns are black

    @property
    def tk_colour(self) -> str:
        return "#%02x%02x%02x" % self.colour


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
YELLOW, MAGENTA, CYAN, WHITE = (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 255, 255)
FIRST_BLOCKS = (
    Block(101, 51, 37, 23, RED), Block(203, 77, 13, 41, GREEN), Block(333, 141, 5, 9, YELLOW),
    Block(517, 303, 61, 17, MAGENTA), Block(7, 601, 3, 3, CYAN), Block(711, 411, 99, 51, WHITE),
    Block(45, 245, 1, 30, BLUE), Block(603, 45, 30, 7, WHITE), Block(873, 633, 117, 67, RED),
)
SECOND_BLOCKS = (
    Block(151, 451, 21, 19, GREEN), Block(255, 521, 7, 7, MAGENTA), Block(401, 205, 43, 11, BLUE),
    Block(911, 99, 9, 101, YELLOW), Block(477, 677, 45, 5, CYAN),
)


def tk_script(delay: float, width: int = 1024, height: int = 768) -> str:
    """The Tcl program for ``wish``: grey full screen, FIRST_BLOCKS after ``delay`` s, SECOND_BLOCKS on ``x``."""

    def blocks(items: tuple[Block, ...]) -> str:
        return " ".join(f"{{{b.x} {b.y} {b.width} {b.height} {b.tk_colour}}}" for b in items)

    return f"""wm overrideredirect . 1
wm geometry . {width}x{height}+0+0
. configure -bg #{BACKGROUND[0]:02x}{BACKGROUND[1]:02x}{BACKGROUND[2]:02x}
proc draw {{blocks prefix}} {{
  set i 0
  foreach b $blocks {{
    lassign $b x y w h c
    set wa [expr {{$w / 2}}]
    if {{$wa > 0}} {{
      frame .$prefix${{i}}l -bg #000000 -width $wa -height $h -bd 0 -highlightthickness 0
      place .$prefix${{i}}l -x $x -y $y
    }}
    frame .$prefix$i -bg $c -width [expr {{$w - $wa}}] -height $h -bd 0 -highlightthickness 0
    place .$prefix$i -x [expr {{$x + $wa}}] -y $y
    incr i
  }}
}}
after {int(delay * 1000)} {{draw {{{blocks(FIRST_BLOCKS)}}} a}}
bind . <KeyPress-x> {{draw {{{blocks(SECOND_BLOCKS)}}} b}}
focus -force .
"""


def reference(width: int, height: int, blocks: tuple[Block, ...]) -> bytes:
    """The picture as RGB bytes, rows top-down; later blocks are drawn over earlier ones."""
    image = bytearray(bytes(BACKGROUND) * (width * height))
    for b in blocks:
        half = b.width // 2
        row = bytes(BLACK) * half + bytes(b.colour) * (b.width - half)
        for y in range(b.y, b.y + b.height):
            start = (y * width + b.x) * 3
            image[start:start + 3 * b.width] = row
    return bytes(image)


def mismatches(rgba: bytes, width: int, height: int, blocks: tuple[Block, ...], tolerance: int = 8) -> int:
    """How many pixels of the ``width`` x ``height`` RGBA canvas differ from the picture by more than
    ``tolerance`` in a channel."""
    if len(rgba) != width * height * 4:
        raise ValueError(f"{len(rgba)} bytes is not a {width}x{height} RGBA image")
    rgb = bytearray(width * height * 3)
    for channel in range(3):
        rgb[channel::3] = rgba[channel::4]
    expected = reference(width, height, blocks)
    bad = 0
    line = width * 3
    for y in range(height):
        got, want = rgb[y * line:(y + 1) * line], expected[y * line:(y + 1) * line]
        if got == want:
            continue
        for x in range(0, line, 3):
            if max(abs(got[x + c] - want[x + c]) for c in range(3)) > tolerance:
                bad += 1
    return bad
