"""OIDC sign-in in Debian's Chromium (Playwright) against a real `serve` and the real provider process:
the login page's button, the provider's own login form, back on the user page with the desktop assigned to
the group the provider's claim names; a forged callback shows a clear page. No xrdp: nothing here connects.

Skipped, with the reason, where /usr/bin/chromium, certutil or the playwright package is missing.
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
from django.conf import settings

from testbed.processes import ControlPlane
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, _missing, trusting_home
from tests.oidc.conftest import CLIENT_ID, CLIENT_SECRET, CALLBACK, PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SEED = """
from django.contrib.auth.models import Group
from broker.models import HostPool
from feed.models import ApplicationGroup, Assignment, Workspace
workspace = Workspace.objects.create(name="contoso", friendly_name="Contoso")
pool = HostPool.objects.create(name="sales-pool", friendly_name="Sales pool", max_session_limit=2)
sales = ApplicationGroup.objects.create(name="dag-sales", friendly_name="Sales desktop", group_type="desktop",
                                       host_pool=pool, workspace=workspace)
Assignment.objects.create(application_group=sales, group=Group.objects.get(name="sales"))
"""


@pytest.fixture(scope="module")
def plane(oidc_provider, tmp_path_factory) -> Iterator[ControlPlane]:
    """`serve` configured with WVD_OIDC_* for the test provider, one desktop assigned to its group "sales"."""
    if _missing():
        pytest.skip(f"browser test skipped: {_missing()}")
    control_plane = ControlPlane(data_dir=tmp_path_factory.mktemp("plane"), serve_args=["--no-gateway"],
                                 extra_env={"DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
                                            "WVD_OIDC_ISSUER": oidc_provider.issuer,
                                            "WVD_OIDC_CLIENT_ID": CLIENT_ID,
                                            "WVD_OIDC_CLIENT_SECRET": CLIENT_SECRET,
                                            "WVD_OIDC_CA_FILE": str(oidc_provider.ca_file),
                                            "WVD_OIDC_PROVIDER_NAME": "Test IdP"})
    control_plane.start()
    try:
        oidc_provider.add_client(CLIENT_ID, CLIENT_SECRET, CALLBACK, f"{control_plane.base_url}/accounts/oidc/callback/")
        control_plane.manage("oidc_groups", "add", "sales")
        control_plane.manage("shell", "-c", SEED)
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture(scope="module")
def chromium(plane, oidc_provider, tmp_path_factory) -> Iterator:
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("chromium-home")
    env = trusting_home(plane, home)  # the plane's CA, as the other browser tests; then the provider's
    subprocess.run(["certutil", "-A", "-d", f"sql:{home / '.pki' / 'nssdb'}", "-n", "test OIDC provider CA", "-t", "C,,",
                    "-i", str(oidc_provider.ca_file)], check=True, capture_output=True, timeout=60)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                             env=env)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium) -> Iterator:
    """A page whose test fails if the browser blocked anything under our Content-Security-Policy."""
    context = chromium.new_context(locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    try:
        yield page
    finally:
        context.close()
    assert violations == [], violations


def test_a_provider_user_signs_in_with_the_button_and_sees_their_groups_desktop(plane, oidc_provider, provider_user,
                                                                                page):
    name = provider_user("browser", groups=["sales"])

    page.goto(f"{plane.base_url}/accounts/login/")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(re.compile(re.escape(oidc_provider.issuer.rsplit("/", 1)[0]) + "/accounts/login/.*"))
    page.get_by_label("Provider user name").fill(name)
    page.get_by_label("Provider password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in to the provider").click()
    page.wait_for_url(f"{plane.base_url}/")

    assert page.get_by_text("Sales desktop").first.is_visible()
    assert page.locator(".who").inner_text() == name.capitalize()  # the provider's given_name


def test_a_forged_callback_shows_a_clear_error(plane, page):
    response = page.goto(f"{plane.base_url}/accounts/oidc/callback/?code=stolen&state=forged")

    assert response.status == 400
    assert page.get_by_role("heading", name="Sign-in failed").is_visible()
    assert page.get_by_role("alert").inner_text().startswith("This sign-in was started in another window")
    assert page.get_by_role("link", name="Back to the sign-in page").is_visible()
