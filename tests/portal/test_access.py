"""Who may use the portal: active users holding a role (and superusers); staff status alone is not enough. Every route is checked, with GET and POST, so a new page
cannot be added without the guard."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from lxml import html

from broker.models import UserSession
from core.models import RoleAssignment
from feed.models import Assignment, RemoteApp
from portal import urls as portal_urls


@pytest.fixture
def every_url(estate) -> list[str]:
    """One URL per portal route, naming objects that exist."""
    pool, host = estate["pool"], estate["hosts"]["host-1"]
    group = estate["desktop_group"]
    args = {
        "pool-detail": [pool.pk], "pool-edit": [pool.pk], "pool-token": [pool.pk], "pool-token-revoke": [pool.pk],
        "host-detail": [host.pk], "host-drain": [host.pk], "host-replacement": [host.pk],
        "workspace-edit": [group.workspace_id],
        "group-detail": [group.pk], "group-edit": [group.pk], "desktop-edit": [group.pk],
        "app-create": [estate["remoteapp_group"].pk], "assignment-create": [group.pk],
        "app-edit": [RemoteApp.objects.get().pk], "assignment-delete": [Assignment.objects.first().pk],
        "session-logoff": [UserSession.objects.first().pk], "session-disconnect": [UserSession.objects.first().pk],
        "session-message": [UserSession.objects.first().pk],
        "connection-detail": [estate["ok"].activity_id],
        "role-remove": [RoleAssignment.objects.create(role="Workspace Reader", group=Group.objects.create(name="r"),
                                                      scope_type="all").pk],
    }
    return [reverse(f"portal:{p.name}", args=args.get(p.name, [])) for p in portal_urls.urlpatterns]


def test_every_route_is_guarded_by_portal_user_required():
    unguarded = [p.name for p in portal_urls.urlpatterns if not getattr(p.callback, "portal_guarded", False)]
    assert unguarded == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_staff_without_a_role_gets_403_on_every_portal_url(member, every_url, method):
    member.is_staff = True
    member.save()
    client = Client()
    client.force_login(member)
    assert {url: getattr(client, method)(url).status_code for url in every_url} == {url: 403 for url in every_url}


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_plain_user_gets_403_on_every_portal_url(plain, every_url, method):
    answers = {url: getattr(plain, method)(url) for url in every_url}

    assert {url: r.status_code for url, r in answers.items() if r.status_code != 403} == {}
    assert all("This page is for administrators" in r.content.decode() for r in answers.values())


def test_a_plain_user_changes_nothing_by_posting(plain, estate):
    host = estate["hosts"]["host-1"]
    plain.post(reverse("portal:host-drain", args=[host.pk]), {"allow": "0"})
    plain.post(reverse("portal:host-replacement", args=[host.pk]), {"mark": "1"})
    plain.post(reverse("portal:pool-token", args=[estate["pool"].pk]))

    host.refresh_from_db()
    estate["pool"].refresh_from_db()
    assert host.allow_new_sessions is True
    assert host.marked_for_replacement_at is None
    assert estate["pool"].registration_token_hash == ""


def test_an_inactive_staff_account_is_refused(admin_user, every_url):
    client = Client()
    client.force_login(admin_user)
    admin_user.is_active = False
    admin_user.save()

    assert client.get(every_url[0]).status_code == 302  # no longer signed in: sent to the login page


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_visitors_are_sent_to_sign_in(client, every_url, method):
    for url in every_url:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next=/portal/"), url


def test_staff_can_open_every_page(staff, every_url):
    pages = [url for url in every_url if not url.endswith(("/token/", "/revoke/", "/drain/", "/replacement/",
                                                               "/logoff/", "/disconnect/", "/assign/", "/remove/"))]
    assert {url: staff.get(url).status_code for url in pages} == {url: 200 for url in pages}


def test_pages_are_not_cached(staff, db):
    response = staff.get(reverse("portal:dashboard"))

    assert "no-cache" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_posts_without_a_csrf_token_are_refused(admin_user, every_url):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    assert {url: client.post(url).status_code for url in every_url} == {url: 403 for url in every_url}


def test_every_form_on_the_pages_carries_a_csrf_token(staff, every_url):
    for url in every_url:
        response = staff.get(url)
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        for form in html.fromstring(response.content).xpath("//form[@method='post']"):
            assert form.xpath(".//input[@name='csrfmiddlewaretoken']"), (url, form.get("action"))
