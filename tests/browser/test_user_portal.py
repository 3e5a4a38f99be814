"""A user at /: only their own resources, one click to a signed .rdp file, and their failed connection
explained in plain words (the admin's diagnostics give the remedy)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import screenshot, sign_in
from wire.errors import describe

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NO_HOST = describe("ConnectionFailedNoHealthyRdshAvailable")


def test_a_user_sees_only_their_resources_and_downloads_an_rdp_file(page, plane, tmp_path):
    sign_in(page, plane, "maya", "/")

    sections = page.locator("section.workspace h2").all_inner_texts()
    titles = page.locator(".tile-title").all_inner_texts()
    assert sections == ["Contoso Corporate"]
    assert titles == ["Office desktop", "Calculator", "Notepad"]  # not the developers' desktop, nor My PC
    assert page.get_by_label("Feed URL").input_value() == f"{plane.base_url}/RDWeb/Feed/webfeed.aspx"

    with page.expect_download() as download_info:
        page.locator("a.tile", has_text="Office desktop").click()
    download = download_info.value
    saved = Path(tmp_path / download.suggested_filename)
    download.save_as(saved)

    assert download.suggested_filename == "Office desktop.rdp"
    text = saved.read_bytes().decode("utf-16")
    assert "full address:s:office-pool" in text and "signature:s:" in text


def test_a_failed_connection_is_explained_to_the_user_in_plain_words(page, plane):
    sign_in(page, plane, "maya", "/")

    latest = page.locator("section.recent li").first
    # "Failed:" is for screen readers; the colour says it to the eye.
    assert " ".join(latest.locator(".problem").inner_text().split()) == f"Failed: {NO_HOST.message}"
    assert latest.get_by_text("quote activity").is_visible()
    assert "Host pool office-pool" not in page.content()  # the admin's detail is not the user's business
    screenshot(page, "user-home")


def test_the_admin_finds_the_same_failure_with_its_remedy(page, plane):
    sign_in(page, plane, "admin", "/portal/connections/?user=maya&error=any")

    page.locator("table a").first.click()

    assert page.get_by_role("heading", name="Why it failed: ConnectionFailedNoHealthyRdshAvailable").is_visible()
    assert page.get_by_text(NO_HOST.remedy).is_visible()
    assert page.get_by_text("Host pool office-pool has 4 hosts").is_visible()
