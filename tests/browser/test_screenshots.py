"""Screenshots of the main pages (docs/screenshots/, 1280x800), taken from the seeded estate; each test
also checks the page shows what its screenshot is meant to show."""
from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot, sign_in, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_dashboard(page, plane):
    sign_in(page, plane, "admin")
    wait_live(page)

    assert page.locator("[data-fragment=pools] tbody tr").count() == 3
    assert page.locator("#errors-title + *, .chart").count() >= 2
    assert page.get_by_text("office-04").first.is_visible()
    screenshot(page, "portal-dashboard")


def test_a_host_pool_with_a_new_registration_token(page, plane):
    sign_in(page, plane, "admin", "/portal/pools/")
    page.get_by_role("link", name="office-pool").click()
    page.get_by_role("button", name="Generate a registration token").click()

    token = page.locator("#registration-token").input_value()
    assert token.startswith("wvdreg_")
    assert f"--token {token}" in page.locator("#register-command").inner_text()
    page.evaluate("document.getElementById('hosts-title').closest('section').scrollIntoView()")
    screenshot(page, "portal-host-pool")


def test_an_application_group_with_its_assignments(page, plane):
    sign_in(page, plane, "admin", "/portal/groups/")
    page.get_by_role("link", name="office-apps").click()
    page.get_by_role("combobox", name="Name").fill("li")
    page.get_by_role("option").first.wait_for()
    screenshot(page, "portal-application-group")


def test_user_sessions(page, plane):
    sign_in(page, plane, "admin", "/portal/sessions/")
    assert page.locator("[data-session-id]").count() == 7
    screenshot(page, "portal-sessions")


def test_connection_diagnostics(page, plane):
    sign_in(page, plane, "admin", "/portal/connections/")
    page.get_by_label("Error code").select_option("any")
    page.get_by_role("button", name="Search").click()
    screenshot(page, "portal-connections")
    page.locator("table a").first.click()
    page.get_by_text("What fixes it").wait_for()
    screenshot(page, "portal-connection-detail")
