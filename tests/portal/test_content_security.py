"""The pages keep to their Content-Security-Policy (scripts and styles from our static files only, nothing
inline), and X-Forwarded-Proto counts only when a trusted proxy sent it."""
from __future__ import annotations

import ipaddress

import pytest
from django.test import Client
from django.urls import reverse
from lxml import html

STRICT = {"default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self'",
          "connect-src": "'self'", "object-src": "'none'", "base-uri": "'none'", "form-action": "'self'",
          "frame-ancestors": "'none'"}


def policy(response) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))


def inline_code(response) -> list[str]:
    """Everything on a page the strict policy would block: inline scripts, style elements and attributes,
    event-handler attributes, javascript: links."""
    doc = html.fromstring(response.content)
    found = [f"<script> without src: {(s.text or '')[:60]!r}" for s in doc.iter("script") if not s.get("src")]
    found += ["<style> element" for _ in doc.iter("style")]
    for element in doc.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            if name == "style" or name.startswith("on") or value.strip().lower().startswith("javascript:"):
                found.append(f"<{element.tag} {name}={value!r}>")
    return found


@pytest.fixture
def pages(estate) -> list[str]:
    pool, host = estate["pool"], estate["hosts"]["host-1"]
    return [
        reverse("portal:dashboard"), reverse("portal:pools"), reverse("portal:pool-detail", args=[pool.pk]),
        reverse("portal:pool-edit", args=[pool.pk]), reverse("portal:host-detail", args=[host.pk]),
        reverse("portal:workspaces"), reverse("portal:groups"),
        reverse("portal:group-detail", args=[estate["desktop_group"].pk]), reverse("portal:sessions"),
        reverse("portal:connections"), reverse("portal:connection-detail", args=[estate["ok"].activity_id]),
        "/", "/admin/",
    ]


def test_portal_user_and_admin_pages_have_the_strict_policy_and_no_inline_code(staff, pages):
    for path in pages:
        response = staff.get(path)
        assert response.status_code == 200, path
        assert policy(response) == STRICT, path
        assert inline_code(response) == [], path


def test_the_sign_in_pages_have_no_inline_code_either(db):
    for path in ("/accounts/login/", "/admin/login/"):
        response = Client().get(path)
        assert policy(response) == STRICT and inline_code(response) == [], path


def test_a_pools_load_is_a_progress_element_not_a_styled_bar(staff, estate):
    doc = html.fromstring(staff.get(reverse("portal:pools")).content)
    meter = doc.xpath(f"//tr[@data-pool-id='{estate['pool'].pk}']//progress[@class='meter']")[0]
    assert meter.get("max") == "100" and meter.get("value") == "50"


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)


def test_x_forwarded_proto_from_a_trusted_proxy_makes_the_request_secure(db, behind_proxy):
    response = Client(REMOTE_ADDR="10.1.2.3").get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert response.wsgi_request.is_secure()
    assert response["Strict-Transport-Security"].startswith("max-age=")


def test_x_forwarded_proto_from_anyone_else_is_ignored(db, behind_proxy):
    response = Client(REMOTE_ADDR="192.0.2.9").get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert not response.wsgi_request.is_secure()
    assert "Strict-Transport-Security" not in response


def test_a_client_cannot_make_an_https_request_look_plain(db, behind_proxy):
    response = Client(REMOTE_ADDR="192.0.2.9").get("/accounts/login/", secure=True,
                                                   headers={"X-Forwarded-Proto": "http"})
    assert response.wsgi_request.is_secure()


def test_without_trusted_proxies_the_header_is_ignored_even_from_loopback(db, settings):
    settings.TRUSTED_PROXIES = ()
    response = Client(REMOTE_ADDR="127.0.0.1").get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert not response.wsgi_request.is_secure()
