"""An admin at work in a real browser against a real `serve`: building a pool, a desktop and an
assignment, adding a host with the token and agent commands the page shows (it arrives live), draining
it; forms keep what was typed, stale pages say so, every form carries its CSRF token."""
from __future__ import annotations

import hashlib
import re
import ssl
import subprocess
import sys

import pytest

from testbed.processes import REPO_ROOT
from tests.browser.conftest import run_module, screenshot, sign_in, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_admin_builds_a_pool_with_a_desktop_adds_a_host_and_drains_it(page, plane, tmp_path):
    sign_in(page, plane, "admin")

    # A host pool.
    page.get_by_role("link", name="New host pool").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("branch-pool")
    page.get_by_role("textbox", name="Friendly name").fill("Branch office")
    page.get_by_role("spinbutton", name="Max session limit").fill("3")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Host pool branch-pool created.").wait_for()
    pool_url = page.url

    # A registration token and the exact commands for the agent; the host registers and shows up live.
    page.get_by_role("button", name="Generate a registration token").click()
    wait_live(page)
    page.get_by_label("Host name").fill("branch-01")
    command = page.locator("#register-command").inner_text()
    token = page.locator("#registration-token").input_value()
    # The CA's fingerprint pins the first contact: the new host trusts nothing it has not checked.
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(plane.ca_file.read_text())).hexdigest().upper()
    pin = ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2))
    assert command == (f"python -m hostagent.agent register --server {plane.base_url} --token {token} "
                       f"--name branch-01 --ca-fingerprint {pin}")
    assert page.locator("#run-command").inner_text() == "python -m hostagent.agent run"
    arguments = command.split()[1:] + ["--state-dir", str(tmp_path / "agent")]
    registered = subprocess.run([sys.executable, *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=120, env=plane.env)
    assert registered.returncode == 0, registered.stderr
    host_row = page.locator("#host-table tr", has_text="branch-01")
    host_row.wait_for()  # no reload: the WebSocket said a host changed, the page fetched its table

    # Drain it with the keyboard.
    host_row.get_by_role("switch").focus()
    page.keyboard.press("Enter")
    page.get_by_text("branch-01 is in drain mode").wait_for()
    assert page.locator("#host-table tr", has_text="branch-01").get_by_role("switch").get_attribute(
        "aria-checked") == "false"
    assert page.url.split("?")[0] == pool_url

    # A desktop application group in that pool, published in a workspace.
    page.get_by_role("link", name="New application group").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("branch-desktop")
    page.get_by_role("textbox", name="Friendly name").fill("Branch desktop")
    page.get_by_label("Group type").select_option("desktop")
    assert page.get_by_label("Host pool").input_value() != ""  # started from the pool
    page.get_by_label("Workspace").select_option(label="Contoso Corporate")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Application group branch-desktop created.").wait_for()

    # Its desktop's name, then a user assigned with the searchable picker, by keyboard.
    page.get_by_role("link", name="Edit desktop").click()
    page.get_by_role("textbox", name="Friendly name").fill("Branch PC")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Desktop Branch PC saved.").wait_for()
    picker = page.get_by_role("combobox", name="Name")
    picker.fill("outs")
    page.get_by_role("option", name=re.compile("Otto Outsider")).wait_for()
    picker.press("ArrowDown")
    picker.press("Enter")
    assert picker.input_value() == "otto"
    page.get_by_role("button", name="Assign").click()
    page.get_by_text("otto is assigned to branch-desktop.").wait_for()

    # Otto sees it.
    other = page.context.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        user_page = other.new_page()
        sign_in(user_page, plane, "otto", "/")
        assert user_page.locator(".tile-title").all_inner_texts() == ["Branch PC", "Developer desktop"]
    finally:
        other.close()


def test_a_form_error_shows_beside_the_field_and_keeps_what_was_typed(page, plane):
    sign_in(page, plane, "admin", "/portal/pools/new/")
    page.get_by_role("textbox", name="Name", exact=True).fill("office pool!")
    page.get_by_role("textbox", name="Friendly name").fill("Second office")
    page.get_by_role("spinbutton", name="Max session limit").fill("0")
    page.get_by_label("Custom RDP properties").fill("audiomode:i:0")
    page.get_by_role("button", name="Save").click()

    page.locator(".field-error").first.wait_for()
    assert page.locator(".field-error").all_inner_texts() == [
        "Use 1-63 letters, digits, '.', '-' or '_', starting with a letter or digit.",
        "Ensure this value is greater than or equal to 1.",
    ]
    assert page.get_by_role("textbox", name="Name", exact=True).input_value() == "office pool!"
    assert page.get_by_role("textbox", name="Friendly name").input_value() == "Second office"
    assert page.get_by_label("Custom RDP properties").input_value() == "audiomode:i:0"
    screenshot(page, "portal-form-errors")


def test_a_page_whose_object_was_deleted_meanwhile_says_so(page, plane):
    sign_in(page, plane, "admin", "/portal/workspaces/")
    page.get_by_role("link", name="Edit labs").click()
    page.get_by_role("textbox", name="Friendly name").fill("Labs, renamed")
    run_module(plane, "from feed.models import Workspace; Workspace.objects.filter(name='labs').delete()")

    page.get_by_role("button", name="Save").click()

    page.get_by_role("heading", name="This workspace no longer exists").wait_for()
    assert page.get_by_role("link", name="Back to workspaces").is_visible()


def test_every_form_carries_a_csrf_token_and_a_post_without_one_is_refused(page, plane):
    sign_in(page, plane, "admin")
    pages = ["/portal/", "/portal/pools/", "/portal/pools/new/", "/portal/groups/", "/portal/sessions/",
             "/portal/connections/", "/portal/workspaces/new/"]
    for path in pages + ["/portal/groups/new/"]:
        page.goto(plane.base_url + path)
        without = page.evaluate("""Array.from(document.querySelectorAll('form'))
            .filter(f => f.method.toLowerCase() === 'post' && !f.querySelector('input[name=csrfmiddlewaretoken]'))
            .map(f => f.action)""")
        assert without == [], path
    page.goto(plane.base_url + "/portal/pools/")
    page.get_by_role("link", name="office-pool").click()
    forms = page.locator("form[method=post]").count()
    assert forms >= 5  # drain switches, token

    answer = page.request.post(plane.base_url + "/portal/pools/new/", form={"name": "sneaky"})

    assert answer.status == 403
    assert "sneaky" not in page.goto(plane.base_url + "/portal/pools/").text()


def test_a_plain_user_gets_403_on_the_portal(page, plane):
    sign_in(page, plane, "maya", "/")
    for path in ["/portal/", "/portal/pools/", "/portal/pools/new/", "/portal/sessions/", "/portal/connections/",
                 "/portal/principals/?q=a"]:
        response = page.goto(plane.base_url + path)
        assert response.status == 403, path
        assert page.get_by_role("heading", name="This page is for administrators").is_visible()
