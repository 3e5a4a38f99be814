"""A desktop in the browser, end to end (issue 14): Debian's Chromium signs in to the user's page as a user,
clicks "Open in browser", and the session page's IronRDP web client reaches xrdp through our gateway's
RDCleanPath transport and a real agent. The test logs in at xrdp's dialog with key events, and the session's
program (``wish`` running ``testbed.screenref.tk_script``) draws coloured blocks at odd coordinates with
widths xrdp pads; pressing ``x`` draws more. Both pictures are checked in the canvas's pixels against the
reference computed from the blocks the program draws (``screenref.mismatches``): a sheared or striped
bitmap (the web client 0.7.0 without ``wire.rdpbitmap.ServerBitmapFix``) leaves thousands of pixels wrong.

A refusal shown in the page (a drained pool) is tests/browser/test_web_client_e2e.py's.

CI runs this module on one shape only (``WVD_TEST_SKIP=browser_desktop`` on the other, .ci/run): the
database changes nothing on this path.
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import time
from collections.abc import Iterator

import pytest

from testbed import screenref
from testbed.screenref import FIRST_BLOCKS, SECOND_BLOCKS, mismatches
from testbed.xrdp import XrdpServer
from tests.browser.conftest import chromium, context, page, screenshot  # noqa: F401 - the browser fixtures
# The estate, its portal user named like xrdp's (``plane``), and how that user opens the desktop and types.
from tests.browser.test_web_client_e2e import (  # noqa: F401
    DRAWN_COLOURS,
    _canvas_colours,
    _open_desktop,
    _physical_keys,
    _wait,
    _wait_still,
    plane,
)
from tests.e2e.estate import Estate, estate  # noqa: F401 - the module's estate
from tests.e2e.test_rdcleanpath import connection

pytestmark = [
    pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif("browser_desktop" in os.environ.get("WVD_TEST_SKIP", "").split(","),
                       reason="WVD_TEST_SKIP=browser_desktop: CI runs the desktop in the browser on the other shape"),
    pytest.mark.skipif(shutil.which("wish") is None, reason=f"wish (Tk) is missing: {screenref.INSTALL_HINT}"),
]

DRAW_DELAY = 3  # seconds from the session's start to the first blocks: the login dialog is gone by then
PICTURE_WAIT = 60  # an upper bound for a loaded machine (login, session start, drawing), not a speed test
KEY_WAIT = 20


@pytest.fixture(scope="module")
def drawing_sessions(estate: Estate) -> Iterator[XrdpServer]:
    """xrdp's sessions run the reference program while this module runs."""
    with estate.xrdp.session_program(["wish", "{dir}/screenref.tcl"],
                                     {"screenref.tcl": screenref.tk_script(DRAW_DELAY, 4096, 4096)}):
        yield estate.xrdp


# --- the page --------------------------------------------------------------------------------------


CANVAS_PIXELS = """canvas => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let text = "";
  for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
  return [canvas.width, canvas.height, btoa(text)];
}"""


def canvas_pixels(page) -> tuple[int, int, bytes]:
    width, height, data = page.locator("iron-remote-desktop canvas").evaluate(CANVAS_PIXELS)
    return width, height, base64.b64decode(data)


def wait_for_picture(page, blocks: tuple[screenref.Block, ...], timeout: float) -> tuple[int, int, int]:
    """Poll the canvas until it shows exactly the picture of ``blocks``; (width, height, mismatching pixels)
    of the last look, 0 on success."""
    deadline = time.monotonic() + timeout
    while True:
        width, height, rgba = canvas_pixels(page)
        wrong = mismatches(rgba, width, height, blocks)
        if wrong == 0 or time.monotonic() > deadline:
            return width, height, wrong
        page.wait_for_timeout(250)


# --- the tests ---------------------------------------------------------------------------------


def test_a_user_opens_the_desktop_in_the_browser_logs_in_and_the_canvas_shows_what_the_session_drew(
        page, estate: Estate, drawing_sessions: XrdpServer):
    before = estate.connection_count()
    _open_desktop(page, estate.plane, drawing_sessions.user)
    page.wait_for_selector("#session[data-state='connected']", state="attached")

    # xrdp's login dialog, prefilled with the user name: once it is drawn (keys sent before are lost), focus
    # the canvas, type the password, Enter.
    _wait(lambda: _canvas_colours(page) >= DRAWN_COLOURS, "xrdp's login dialog in the canvas")
    _wait_still(page)
    # Focus without a click (a click outside the dialog would take xrdp's focus off its password field) and
    # without scrolling the page (the screenshot shows the toolbar whole).
    page.locator("iron-remote-desktop canvas").evaluate("canvas => canvas.focus({preventScroll: true})")
    for key in _physical_keys(drawing_sessions.password):
        page.keyboard.press(key)
    page.keyboard.press("Enter")

    width, height, wrong = wait_for_picture(page, FIRST_BLOCKS, PICTURE_WAIT)
    assert wrong == 0, f"{wrong} of {width}x{height} canvas pixels differ from the session's first blocks"
    assert width >= 1024 and height >= 720  # every block is on the screen
    # The change is still to come: the second blocks are not on the canvas yet.
    assert mismatches(canvas_pixels(page)[2], width, height, FIRST_BLOCKS + SECOND_BLOCKS) > 0

    page.keyboard.press("KeyX")  # the program draws the second blocks

    width, height, wrong = wait_for_picture(page, FIRST_BLOCKS + SECOND_BLOCKS, KEY_WAIT)
    assert wrong == 0, f"{wrong} of {width}x{height} canvas pixels differ after x"
    screenshot(page, "browser-desktop")

    # One Connection, on the browser transport, whose activity id the page shows.
    assert estate.connection_count() == before + 1
    activity = page.locator("[data-activity-id]").get_attribute("data-activity-id")
    record = connection(estate, activity)
    assert (record["transport"], record["username"], record["error_code"]) == \
        ("rdcleanpath", drawing_sessions.user, ""), record
    assert record["relay_started_at"], record
    assert "login successful for user" in drawing_sessions.log_text()

    page.get_by_role("button", name="Disconnect").click()
    page.wait_for_selector("#session[data-state='ended']", state="attached")
