"""A desktop in the browser refused for its Origin: the portal is reached by a name its origins do not list
(WVD_WEB_ORIGINS names only the public portal, the user came in by the instance's own address), so the gateway
refuses the page's WebSocket. The page shows our error code and the activity id, and the refusal is recorded for
the user and the desktop, with the web ticket left unused. The refusal comes before placement, so this plane
needs no session host: its seeded estate (tests/browser/seed.py) and its own gateway listener are enough.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.conf import settings

from tests.browser.conftest import PASSWORD, _missing, sign_in
from testbed.processes import ControlPlane

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PUBLIC_PORTAL = "https://portal.example.net"  # the only origin the gateway accepts browser WebSockets from


@pytest.fixture(scope="module")
def plane(tmp_path_factory) -> Iterator[ControlPlane]:
    """The browser conftest's plane, with the gateway listener on and the portal's origins set to a name the
    test's browser does not use."""
    if _missing():
        pytest.skip(f"browser test skipped: {_missing()}")
    control_plane = ControlPlane(data_dir=tmp_path_factory.mktemp("plane"),
                                 extra_env={"DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
                                            "WVD_HEARTBEAT_INTERVAL": "3600",
                                            "WVD_WEB_ORIGINS": PUBLIC_PORTAL})
    control_plane.start()
    try:
        control_plane.manage("shell", "-c", "from tests.browser.seed import seed; seed()")
        yield control_plane
    finally:
        control_plane.stop()


def _connection(plane: ControlPlane, activity_id: str) -> dict:
    status, body = plane.call("POST", "/api/v1/auth/token/", {"username": "admin", "password": PASSWORD}, None)
    assert status == 201, body
    status, answer = plane.call("GET", f"/api/v1/connections/?activity_id={activity_id}", None, body["token"])
    assert status == 200, answer
    matches = [c for c in answer["results"] if c["activity_id"] == activity_id]
    assert len(matches) == 1, (activity_id, answer)
    return matches[0]


def test_a_page_from_an_origin_the_portal_does_not_list_shows_the_refusal_and_it_is_recorded(page, plane):
    assert not plane.base_url.startswith(PUBLIC_PORTAL)
    sign_in(page, plane, "maya", "/")
    tile = page.locator("li.tile-item", has=page.locator(".tile-title", has_text="Office desktop"))

    tile.get_by_role("link", name=re.compile("Open in browser")).click()

    page.wait_for_url(re.compile(r".*/web/office-desktop/desktop/$"))
    page.wait_for_selector("[data-error-code]", state="attached")
    code = page.locator("[data-error-code]").get_attribute("data-error-code")
    assert page.locator("[data-activity-id]").count() == 1, (code, page.locator("#session-error").inner_text())
    activity = page.locator("[data-activity-id]").get_attribute("data-activity-id")
    assert code == "ConnectionFailedOriginNotAllowed"
    assert page.get_by_text("quote activity").is_visible()

    record = _connection(plane, activity)
    assert (record["state"], record["error_code"], record["transport"]) == (
        "failed", "ConnectionFailedOriginNotAllowed", "rdcleanpath")
    assert record["username"] == "maya" and record["resource_name"] == "office-desktop/desktop"
    assert record["session_host"] is None and record["host_selected_at"] is None
