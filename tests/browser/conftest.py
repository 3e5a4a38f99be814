"""Browser tests: Playwright for Python driving Debian's Chromium against a real `serve` process.

Skipped, with the reason, where /usr/bin/chromium or the playwright package is missing. Playwright's own
browser download (`playwright install`) is never used.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from testbed.processes import REPO_ROOT, ControlPlane
from tests.e2e.fixtures import pytest_runtest_makereport  # noqa: F401  (a failed test shows the plane's logs)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
PASSWORD = "correct-horse-battery-staple"  # tests/browser/seed.py
WAIT_MS = 30_000  # an upper bound for a loaded 2-core machine, not a speed assertion


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: apt-get install -y chromium"
    if shutil.which("certutil") is None:
        return "certutil is missing: apt-get install -y libnss3-tools"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -r requirements.txt (never `playwright install`)"
    return None


def pytest_collection_modifyitems(config, items) -> None:
    reason = _missing()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.skip(reason=f"browser test skipped: {reason}"))


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread while it
# is open, which would break every asyncio test that runs after the browser modules.
@pytest.fixture(scope="module")
def chromium(plane, tmp_path_factory) -> Iterator:
    reason = _missing()
    if reason:
        pytest.skip(f"browser test skipped: {reason}")
    from playwright.sync_api import sync_playwright

    # The plane serves https with a certificate from its own CA, which Chromium trusts through its NSS
    # store in a HOME of its own. Playwright's own HTTP client (page.request) runs in its Node driver, which
    # trusts NODE_EXTRA_CA_CERTS.
    env = trusting_home(plane, tmp_path_factory.mktemp("chromium-home"))
    before = os.environ.get("NODE_EXTRA_CA_CERTS")
    os.environ["NODE_EXTRA_CA_CERTS"] = str(plane.ca_file)
    manager = sync_playwright()
    try:
        playwright = manager.start()  # the driver starts now, with the variable
    finally:
        if before is None:
            del os.environ["NODE_EXTRA_CA_CERTS"]
        else:
            os.environ["NODE_EXTRA_CA_CERTS"] = before
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                             env=env)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def plane(tmp_path_factory) -> Iterator[ControlPlane]:
    """One control plane per test module: `serve` without the RD Gateway listener, a CA, the seeded estate."""
    if _missing():
        pytest.skip(f"browser test skipped: {_missing()}")
    # The plane runs with this test session's settings module, as the tests' own Django does.
    control_plane = ControlPlane(data_dir=tmp_path_factory.mktemp("plane"), serve_args=["--no-gateway"],
                                 extra_env={"DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
                                            # seeded heartbeats stay fresh for the whole module
                                            "WVD_HEARTBEAT_INTERVAL": "3600"})
    control_plane.start()
    try:
        control_plane.manage("initca")
        control_plane.manage("shell", "-c", "from tests.browser.seed import seed; seed()")
        yield control_plane
    finally:
        control_plane.stop()


def trusting_home(plane: ControlPlane, home: Path) -> dict[str, str]:
    """A HOME whose NSS database (Chromium's certificate store on Linux, ~/.pki/nssdb) trusts the plane's CA
    to identify web servers, as a user's `certutil -A -t C,,` would; the environment to launch Chromium with."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for command in (["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"],
                    ["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "WVD test CA", "-t", "C,,", "-i", str(plane.ca_file)]):
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return {**os.environ, "HOME": str(home)}


@pytest.fixture
def context(chromium) -> Iterator:
    ctx = chromium.new_context(viewport=VIEWPORT, accept_downloads=True, color_scheme="light",
                               locale="en-GB", timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context):
    """A page whose test fails if the browser blocked anything under the Content-Security-Policy: the
    policy allows no inline script or style, and this is where a real browser says whether we kept to it."""
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    yield page
    assert violations == [], violations


def sign_in(page, plane: ControlPlane, username: str, next_path: str = "/portal/") -> None:
    page.goto(f"{plane.base_url}/accounts/login/?next={next_path}")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(plane.base_url + next_path.split("?")[0]) + ".*"))


def wait_live(page) -> None:
    """Until the page's WebSocket is open (the body carries data-live-ready)."""
    page.wait_for_selector("body[data-live-ready]", state="attached")


def screenshot(page, name: str) -> Path:
    """Save a viewport-sized PNG of the page as docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # Icons load lazily, after the load event: wait for every image, so no tile is shot blank. Polled from
    # here: wait_for_function evaluates its predicate with eval(), which the pages' CSP forbids (no
    # 'unsafe-eval'), while evaluate() runs through the DevTools protocol.
    deadline = time.monotonic() + WAIT_MS / 1000
    while not page.evaluate("() => Array.from(document.images).every(image => image.complete)"):
        assert time.monotonic() < deadline, f"images still loading on {page.url}"
        page.wait_for_timeout(50)
    page.screenshot(path=str(path), full_page=False, animations="disabled", caret="hide")
    return path


def run_module(plane: ControlPlane, code: str) -> str:
    """Run Python inside the plane's Django (its database), returning what it printed."""
    return plane.manage("shell", "-c", code).stdout


