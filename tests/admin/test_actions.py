"""Admin actions: drain mode, marking a host for replacement, registration tokens shown once, API tokens issued
once and revoked."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from broker.models import HostPool, SessionHost
from core.hashing import hash_secret
from core.models import ApiToken
from tests.hostagent.conftest import eager_tasks, live_host, our_ca, root_files  # noqa: F401  (a registered host)

pytestmark = pytest.mark.django_db

HOST_POOLS = reverse("admin:broker_hostpool_changelist")
SESSION_HOSTS = reverse("admin:broker_sessionhost_changelist")
API_TOKENS = reverse("admin:wvdportal_apitoken_changelist")
REGISTRATION_TOKEN = re.compile(r"wvdreg_[A-Za-z0-9_-]+")
API_TOKEN = re.compile(r"wvd_[A-Za-z0-9_-]+")


def run_action(browser, changelist: str, action: str, objects):
    return browser.post(changelist, {"action": action, "_selected_action": [obj.pk for obj in objects]})


def assert_kept_nowhere(secret: str, response) -> None:
    """The secret left the server in that one page only: not in a cookie, not in a stored session."""
    # The messages cookie is signed and may be compressed, so look for it being empty, not for the text.
    assert "messages" not in response.cookies or response.cookies["messages"].value == ""
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert all(secret not in str(session.get_decoded()) for session in Session.objects.all())


class TestDrainMode:
    @pytest.fixture
    def hosts(self, pooled_pool):
        return [SessionHost.objects.create(name=f"sh-{n}", host_pool=pooled_pool) for n in range(3)]

    def test_drain_on_stops_new_sessions_on_the_selected_hosts(self, admin_browser, hosts):
        response = run_action(admin_browser, SESSION_HOSTS, "drain_on", hosts[:2])
        assert response.status_code == 302
        allowed = dict(SessionHost.objects.values_list("name", "allow_new_sessions"))
        assert allowed == {"sh-0": False, "sh-1": False, "sh-2": True}
        message = [str(m) for m in admin_browser.get(response.url).context["messages"]]
        assert message == ["2 session host(s) in drain mode: no new sessions."]

    def test_drain_off_allows_new_sessions_again(self, admin_browser, hosts):
        for host in hosts:
            host.set_allow_new_sessions(False)
        run_action(admin_browser, SESSION_HOSTS, "drain_off", hosts[:1])
        allowed = dict(SessionHost.objects.values_list("name", "allow_new_sessions"))
        assert allowed == {"sh-0": True, "sh-1": False, "sh-2": False}

    def test_drain_is_recorded_in_the_admin_history(self, admin_browser, hosts):
        run_action(admin_browser, SESSION_HOSTS, "drain_on", hosts[:1])
        entry = LogEntry.objects.get(object_id=str(hosts[0].pk))
        assert entry.get_change_message() == "Drain mode on"


class TestReplacement:
    """A registration cannot take over a live host until an admin marks it for replacement."""

    def test_marking_lets_the_next_registration_take_the_host_over(self, admin_browser, admin_user, live_host):
        live_host.assert_not_replaced(live_host.register_again())

        response = run_action(admin_browser, SESSION_HOSTS, "mark_for_replacement", [live_host.host])

        assert response.status_code == 302
        host = SessionHost.objects.get(pk=live_host.host.pk)
        assert host.marked_for_replacement_by == admin_user and host.marked_for_replacement_at is not None
        [message] = [str(m) for m in admin_browser.get(response.url).context["messages"]]
        assert message.startswith("1 session host(s) marked for replacement")
        assert LogEntry.objects.get(object_id=str(host.pk)).get_change_message() == "Marked for replacement"
        live_host.assert_replaced_by(live_host.register_again())
        assert "marked for replacement by admin at" in live_host.certificate.revocation_reason

    def test_cancelling_refuses_registrations_again(self, admin_browser, admin_user, live_host):
        live_host.host.mark_for_replacement(by=admin_user)
        run_action(admin_browser, SESSION_HOSTS, "cancel_replacement", [live_host.host])
        assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None
        assert LogEntry.objects.get(object_id=str(live_host.host.pk)).get_change_message() == "Replacement cancelled"
        live_host.assert_not_replaced(live_host.register_again())

    def test_the_change_page_says_what_a_new_registration_would_do(self, admin_browser, admin_user, live_host):
        change = reverse("admin:broker_sessionhost_change", args=[live_host.host.pk])
        assert "Is refused while the agent&#x27;s certificate is valid" in admin_browser.get(change).content.decode()
        live_host.host.mark_for_replacement(by=admin_user)
        assert "marked for replacement by admin at" in admin_browser.get(change).content.decode()

    def test_staff_without_the_replace_action_cannot_mark(self, django_user_model, live_host, give_role):
        viewer = django_user_model.objects.create_user("viewer", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="change_sessionhost"))  # grants nothing
        give_role(viewer, "Host Pool Reader")
        browser = Client()
        browser.force_login(viewer)
        response = run_action(browser, SESSION_HOSTS, "mark_for_replacement", [live_host.host])
        assert response.status_code in (200, 302)  # the admin answers "no action selected", changes nothing
        assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None
        live_host.assert_not_replaced(live_host.register_again())


class TestRegistrationTokenAction:
    def test_the_token_is_shown_with_its_expiry_and_lets_a_host_register(self, admin_browser, pooled_pool):
        response = run_action(admin_browser, HOST_POOLS, "issue_registration_token", [pooled_pool])
        assert response.status_code == 200
        page = response.content.decode()
        [token] = REGISTRATION_TOKEN.findall(page)
        assert HostPool.for_registration_token(token) == pooled_pool
        pooled_pool.refresh_from_db()
        assert f"{pooled_pool.registration_token_expires_at:%Y-%m-%d %H:%M:%S} UTC" in page

    def test_only_the_hash_is_stored(self, admin_browser, pooled_pool):
        page = run_action(admin_browser, HOST_POOLS, "issue_registration_token", [pooled_pool]).content.decode()
        [token] = REGISTRATION_TOKEN.findall(page)
        stored = HostPool.objects.filter(pk=pooled_pool.pk).values().get()
        assert stored["registration_token_hash"] == hash_secret(token)
        assert not any(token in str(value) for value in stored.values())

    def test_the_token_is_shown_once(self, admin_browser, pooled_pool):
        response = run_action(admin_browser, HOST_POOLS, "issue_registration_token", [pooled_pool])
        [token] = REGISTRATION_TOKEN.findall(response.content.decode())
        assert_kept_nowhere(token, response)
        for page in (HOST_POOLS, reverse("admin:broker_hostpool_change", args=[pooled_pool.pk])):
            following = admin_browser.get(page).content.decode()
            assert token not in following
            assert not REGISTRATION_TOKEN.search(following)

    def test_the_page_is_not_cached(self, admin_browser, pooled_pool):
        response = run_action(admin_browser, HOST_POOLS, "issue_registration_token", [pooled_pool])
        assert "no-store" in response["Cache-Control"]

    def test_each_selected_pool_gets_its_own_token(self, admin_browser, pooled_pool, personal_pool):
        page = run_action(admin_browser, HOST_POOLS, "issue_registration_token",
                          [pooled_pool, personal_pool]).content.decode()
        tokens = REGISTRATION_TOKEN.findall(page)
        assert {HostPool.for_registration_token(token) for token in tokens} == {pooled_pool, personal_pool}

    def test_a_new_token_replaces_the_old_one(self, admin_browser, pooled_pool):
        old, _ = pooled_pool.issue_registration_token()
        run_action(admin_browser, HOST_POOLS, "issue_registration_token", [pooled_pool])
        assert HostPool.for_registration_token(old) is None

    def test_revoking_makes_the_token_useless(self, admin_browser, pooled_pool, personal_pool):
        revoked, _ = pooled_pool.issue_registration_token()
        kept, _ = personal_pool.issue_registration_token()
        response = run_action(admin_browser, HOST_POOLS, "revoke_registration_token", [pooled_pool])
        assert response.status_code == 302
        assert HostPool.for_registration_token(revoked) is None
        assert HostPool.for_registration_token(kept) == personal_pool
        assert HostPool.objects.get(pk=pooled_pool.pk).registration_token_hash == ""

    def test_the_change_page_says_whether_a_token_is_valid(self, admin_browser, pooled_pool):
        change = reverse("admin:broker_hostpool_change", args=[pooled_pool.pk])
        assert "Valid until" not in admin_browser.get(change).content.decode()
        pooled_pool.issue_registration_token()
        assert "Valid until" in admin_browser.get(change).content.decode()
        HostPool.objects.filter(pk=pooled_pool.pk).update(registration_token_expires_at=timezone.now())
        assert "Expired" in admin_browser.get(change).content.decode()


class TestApiTokens:
    def add(self, browser, user, lifetime_hours=""):
        return browser.post(
            reverse("admin:wvdportal_apitoken_add"),
            {"user": user.pk, "description": "deploy script", "lifetime_hours": lifetime_hours},
        )

    def test_creating_a_token_shows_it_once_and_it_works(self, admin_browser, member):
        response = self.add(admin_browser, member, lifetime_hours=2)
        assert response.status_code == 200
        [key] = API_TOKEN.findall(response.content.decode())
        token = ApiToken.authenticate(key)
        assert (token.user, token.description) == (member, "deploy script")
        # expires_at is computed a moment before created_at is stamped
        assert timedelta(hours=1, minutes=59) < token.expires_at - token.created_at <= timedelta(hours=2)
        assert token.key_hash == hash_secret(key)
        assert_kept_nowhere(key, response)
        following = admin_browser.get(reverse("admin:wvdportal_apitoken_change", args=[token.pk]))
        assert key not in following.content.decode()

    def test_a_token_without_a_lifetime_does_not_expire(self, admin_browser, member):
        [key] = API_TOKEN.findall(self.add(admin_browser, member).content.decode())
        assert ApiToken.authenticate(key).expires_at is None

    def test_the_creation_form_refuses_a_lifetime_below_an_hour(self, admin_browser, member):
        response = self.add(admin_browser, member, lifetime_hours=0)
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["lifetime_hours"]
        assert not ApiToken.objects.exists()

    def test_revoking_stops_the_token(self, admin_browser, member):
        token, key = ApiToken.issue(member)
        other, other_key = ApiToken.issue(member)
        response = run_action(admin_browser, API_TOKENS, "revoke_tokens", [token])
        assert response.status_code == 302
        assert ApiToken.authenticate(key) is None
        assert ApiToken.authenticate(other_key) == other

    def test_the_change_page_never_shows_the_hash(self, admin_browser, member):
        token, _ = ApiToken.issue(member)
        page = admin_browser.get(reverse("admin:wvdportal_apitoken_change", args=[token.pk])).content.decode()
        assert token.prefix in page
        assert token.key_hash not in page
