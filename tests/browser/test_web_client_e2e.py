"""A desktop in the browser, end to end with real parts: Debian's Chromium signs in to a real `serve`, clicks
"Open in browser", and the vendored IronRDP web client reaches xrdp through the gateway's RDCleanPath transport
and a real agent (test_connection.py's estate); the password is typed into xrdp's own login dialog, drawn in
the canvas. And refusals (a drained pool, a used and an expired web ticket) show their error code in the page
and are recorded.

The bed's sessions live one second (testbed/xrdp.py); xrdp's login log line is the proof of a login, and
Disconnect ends the connection, which the page and the record then say without an error code.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.browser.conftest import PASSWORD, WAIT_MS, screenshot, sign_in
from tests.e2e.estate import POOL_NAME, Estate, estate  # noqa: F401  (the real stack)
from tests.e2e.fixtures import xvfb  # noqa: F401  (the X display; xrdp_server is tests/conftest.py's)
from tests.e2e.test_rdcleanpath import ask, connection, web_ticket
from testbed.xrdp import XRDP_LOGIN_OK

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

# How many distinct colours the canvas must show before we call xrdp's login dialog drawn: its logo alone has
# dozens; the bare background has one.
DRAWN_COLOURS = 12


@pytest.fixture(scope="module")
def plane(estate: Estate):  # noqa: F811  (the chromium fixture trusts this plane's CA)
    """The browser fixtures' plane is the estate's, with a portal user named like the bed's xrdp user (xrdp's
    dialog is prefilled with the portal user's name) assigned to the estate's desktop."""
    estate.plane.manage("shell", "--no-imports", "-c", (
        "from django.contrib.auth import get_user_model; from feed.models import ApplicationGroup, Assignment;"
        f"u = get_user_model().objects.create_user({estate.xrdp.user!r}, '', {PASSWORD!r});"
        "Assignment.objects.create(application_group=ApplicationGroup.objects.get(name='e2e-desktops'), user=u)"
    ))
    return estate.plane


def _canvas_colours(page) -> int:
    """Distinct colours in a sample of the remote screen's canvas (read through DevTools: the page's CSP
    forbids the eval() that wait_for_function needs)."""
    return page.evaluate("""() => {
        const host = document.querySelector("iron-remote-desktop");
        const canvas = host && host.shadowRoot && host.shadowRoot.querySelector("canvas");
        if (!canvas || !canvas.width) return 0;
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        const seen = new Set();
        for (let i = 0; i < data.length; i += 4 * 97) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
        return seen.size;
    }""")


def _wait_still(page, quiet: float = 1.5) -> None:
    """Until the canvas has not changed for ``quiet`` seconds: xrdp has finished drawing its dialog (keys typed
    while it is still being set up are lost)."""
    last, since = None, time.monotonic()
    deadline = since + WAIT_MS / 1000
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the canvas kept changing"
        current = page.evaluate("""() => {
            const canvas = document.querySelector("iron-remote-desktop").shadowRoot.querySelector("canvas");
            return canvas.toDataURL().length;
        }""")
        if current != last:
            last, since = current, time.monotonic()
        time.sleep(0.2)


def _physical_keys(text: str) -> list[str]:
    """The key presses that type ``text`` on a US keyboard. The client sends scancodes (KeyboardEvent.code),
    and Playwright's type() sends "A" without Shift, which a scancode makes an "a": so say Shift outright.
    Covers what the bed's passwords hold (secrets.token_urlsafe: letters, digits, "-" and "_")."""
    keys = []
    for char in text:
        if char.isascii() and char.isalpha():
            keys.append(f"Shift+Key{char}" if char.isupper() else f"Key{char.upper()}")
        elif char.isdigit():
            keys.append(f"Digit{char}")
        elif char in "-_":
            keys.append("Shift+Minus" if char == "_" else "Minus")
        else:
            raise AssertionError(f"no key for {char!r}")
    return keys


def _wait(predicate, what: str, timeout: float = WAIT_MS / 1000, detail=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{detail()}"
        time.sleep(0.2)


def _xrdp_events(estate: Estate) -> str:  # noqa: F811
    """xrdp's log without the agent's health probes (a connection and a refused handshake every second)."""
    return "\n".join(line for line in estate.xrdp.log_text().splitlines()[-400:]
                     if "[ERROR]" not in line and "connection received from" not in line)


def _open_desktop(page, plane, username: str) -> None:
    sign_in(page, plane, username, "/")
    page.get_by_role("link", name=re.compile("Open in browser")).first.click()
    page.wait_for_url(re.compile(r".*/web/e2e-desktops/desktop/$"))


def test_a_user_logs_in_to_xrdp_in_the_browser_through_the_gateway(page, estate: Estate):  # noqa: F811
    logins_before = estate.xrdp.log_text().count(XRDP_LOGIN_OK)
    _open_desktop(page, estate.plane, estate.xrdp.user)

    page.wait_for_selector("#session[data-state='connected']", state="attached")
    page.wait_for_selector("[data-activity-id]", state="attached")
    activity = page.locator("[data-activity-id]").get_attribute("data-activity-id")
    _wait(lambda: _canvas_colours(page) >= DRAWN_COLOURS, "xrdp's login dialog in the canvas")
    _wait_still(page)
    screenshot(page, "web-client-xrdp-login")  # the README's picture of a desktop in the browser

    # The dialog is prefilled with the user name and has the password field focused: the password is typed
    # there (no auto-logon). The component takes keys while the pointer is over its canvas; a click on the
    # dialog would move xrdp's focus, so the pointer only rests on the remote screen's corner.
    box = page.locator("iron-remote-desktop canvas").bounding_box()
    page.mouse.move(box["x"] + 8, box["y"] + 8)
    for key in _physical_keys(estate.xrdp.password):
        page.keyboard.press(key, delay=20)
    page.keyboard.press("Enter")

    _wait(lambda: estate.xrdp.log_text().count(XRDP_LOGIN_OK) > logins_before, "xrdp's successful login",
          detail=lambda: _xrdp_events(estate))
    # The bed's session lives a second; xrdp then keeps the connection open (the web client does not act on
    # the logoff as FreeRDP does), so the user leaves with Disconnect, and the page says the session ended.
    page.get_by_role("button", name="Disconnect").click()
    page.wait_for_selector("#session[data-state='ended']", state="attached")
    assert page.locator("[data-error-code]").count() == 0
    assert page.get_by_text("The session has ended").is_visible()
    _wait(lambda: estate.last_connection()["ended_at"], "the connection's end in its record")
    record = estate.last_connection()
    assert record["activity_id"] == activity
    assert record["relay_started_at"] and record["bytes_host_to_client"] > 0
    assert record["error_code"] == ""


def test_a_refusal_shows_its_error_code_in_the_page_and_is_recorded(page, estate: Estate):  # noqa: F811
    host = estate.host()
    status, _ = estate.api("POST", f"/api/v1/sessionhosts/{host['id']}/drain/", {"allow_new_sessions": False})
    assert status == 200
    try:
        _open_desktop(page, estate.plane, estate.xrdp.user)
        page.wait_for_selector("[data-error-code]", state="attached")
        code = page.locator("[data-error-code]").get_attribute("data-error-code")
        activity = page.locator("[data-activity-id]").get_attribute("data-activity-id")
    finally:
        estate.api("POST", f"/api/v1/sessionhosts/{host['id']}/drain/", {"allow_new_sessions": True})
    assert code == "ConnectionFailedNoHealthyRdshAvailable"
    record = estate.last_connection()
    assert (record["activity_id"], record["error_code"]) == (activity, code)
    assert page.get_by_text("quote activity").is_visible()


def _page_gets_ticket(page, ticket: str) -> None:
    """The page's ticket request answered as the view answers it, but carrying ``ticket``: how a used or an
    expired web ticket reaches the page's client (the page itself mints a fresh one per click)."""
    def answer(route) -> None:
        response = route.fetch()
        body = response.json()
        body["ticket"] = ticket
        route.fulfill(response=response, json=body)
    page.route(re.compile(r".*/web/e2e-desktops/desktop/ticket/$"), answer)


def _shown_refusal(page, estate: Estate) -> tuple[str, dict]:  # noqa: F811
    page.wait_for_selector("[data-error-code]", state="attached")
    code = page.locator("[data-error-code]").get_attribute("data-error-code")
    assert page.locator("[data-activity-id]").count() == 1, (code, page.locator("#session-error").inner_text())
    return code, connection(estate, page.locator("[data-activity-id]").get_attribute("data-activity-id"))


def test_a_used_web_ticket_shows_its_error_code_in_the_page_and_is_recorded(page, estate: Estate):  # noqa: F811
    ticket = web_ticket(estate, user=estate.xrdp.user)
    assert ask(estate, ticket).pdu.error is None  # its one use
    _page_gets_ticket(page, ticket)

    _open_desktop(page, estate.plane, estate.xrdp.user)

    code, record = _shown_refusal(page, estate)
    assert code == record["error_code"] == "ConnectionFailedTicketAlreadyUsed"
    assert record["transport"] == "rdcleanpath"


def test_an_expired_web_ticket_shows_its_error_code_in_the_page_and_is_recorded(page, estate: Estate):  # noqa: F811
    ticket = web_ticket(estate, user=estate.xrdp.user, lifetime_seconds=1)
    time.sleep(2.1)  # tickets carry whole seconds
    _page_gets_ticket(page, ticket)

    _open_desktop(page, estate.plane, estate.xrdp.user)

    code, record = _shown_refusal(page, estate)
    assert code == record["error_code"] == "ConnectionFailedTicketExpired"
    assert record["transport"] == "rdcleanpath"
