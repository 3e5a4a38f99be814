"""A desktop in the browser: "Open in browser" on the user's page opens the session page, whose vendored IronRDP
web client loads (WebAssembly under the page's own CSP, which the `page` fixture checks the browser kept) and
asks for a web ticket. This plane runs without the gateway listener, so the connection then fails, and the page
says so with an error code."""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_user_opens_a_desktop_in_the_browser_and_the_client_loads(page, plane):
    sign_in(page, plane, "maya", "/")
    tile = page.locator("li.tile-item", has=page.locator(".tile-title", has_text="Office desktop"))
    tickets = []
    page.on("request", lambda request: tickets.append(request) if request.url.endswith("/ticket/") else None)

    tile.get_by_role("link", name=re.compile("Open in browser")).click()

    page.wait_for_url(re.compile(r".*/web/[^/]+/desktop/$"))
    page.wait_for_selector("#session[data-component='ready']", state="attached")
    component = page.locator("iron-remote-desktop")
    assert component.count() == 1
    # The web component rendered its canvas (in its shadow root, which Playwright's locators pierce).
    assert component.locator("canvas").count() == 1
    # The ticket was asked for by a POST, and never travels in a URL.
    page.wait_for_selector("[data-error-code]", state="attached")
    assert [request.method for request in tickets] == ["POST"]
    assert all("ticket=" not in request.url for request in tickets)
    # No gateway listens on this plane: the browser says so with its own code (no Connection was recorded).
    assert page.locator("[data-error-code]").get_attribute("data-error-code") == "BrowserGatewayUnreachable"
    assert page.get_by_text("The gateway cannot be reached from this browser").is_visible()
    assert page.get_by_role("button", name="Connect again").first.is_visible()


def test_remoteapps_are_not_offered_in_the_browser(page, plane):
    sign_in(page, plane, "maya", "/")

    apps = page.locator("li.tile-item", has=page.locator(".tile-kind", has_text="RemoteApp"))
    assert apps.count() == 2
    assert apps.get_by_text("Open in browser").count() == 0
    assert page.locator("li.tile-item").get_by_text("Open in browser").count() == 1
    assert page.get_by_text("RemoteApps need a Remote Desktop client").is_visible()
