"""What the change pages show and allow: fixed types, the group's inlines, a pool's hosts, a host's
status changes, a connection's checkpoints."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from broker.models import Connection, HostPool, SessionHost
from core.models import ApiToken
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp
from tests.admin.forms import add_inline_rows, form_data

pytestmark = pytest.mark.django_db


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def inlines(response) -> dict[type, object]:
    return {inline.formset.model: inline for inline in response.context["inline_admin_formsets"]}


def error_text(response) -> str:
    errors = [str(response.context["adminform"].form.errors)]
    errors += [str(inline.formset.non_form_errors()) + str(inline.formset.errors)
               for inline in response.context["inline_admin_formsets"]]
    return " ".join(errors)


class TestTypesAreFixed:
    def test_the_pool_type_is_shown_but_not_editable(self, admin_browser, pooled_pool):
        response = admin_browser.get(change_url(pooled_pool))
        assert "pool_type" not in response.context["adminform"].form.fields
        assert "Pooled" in response.content.decode()

    def test_posting_another_pool_type_changes_nothing(self, admin_browser, pooled_pool):
        data = form_data(admin_browser.get(change_url(pooled_pool)))
        data.update(pool_type="personal", friendly_name="Pool A renamed")
        assert admin_browser.post(change_url(pooled_pool), data).status_code == 302
        stored = HostPool.objects.get(pk=pooled_pool.pk)
        assert (stored.pool_type, stored.friendly_name) == ("pooled", "Pool A renamed")

    def test_the_pool_type_is_chosen_when_adding(self, admin_browser):
        response = admin_browser.get(reverse("admin:broker_hostpool_add"))
        assert "pool_type" in response.context["adminform"].form.fields

    def test_the_group_type_is_shown_but_not_editable(self, admin_browser, desktop_group):
        data = form_data(admin_browser.get(change_url(desktop_group)))
        assert "group_type" not in data
        data["group_type"] = "remoteapp"
        assert admin_browser.post(change_url(desktop_group), data).status_code == 302
        assert ApplicationGroup.objects.get(pk=desktop_group.pk).group_type == "desktop"


class TestApplicationGroupPage:
    def test_a_desktop_group_shows_its_desktop_to_edit_but_not_to_add_or_delete(self, admin_browser, desktop_group):
        shown = inlines(admin_browser.get(change_url(desktop_group)))
        assert set(shown) == {Desktop, Assignment}
        desktop = shown[Desktop]
        assert (desktop.has_add_permission, desktop.has_change_permission, desktop.has_delete_permission) == (
            False, True, False)
        assert [form.instance for form in desktop.formset.forms] == [desktop_group.desktop]

    def test_the_desktop_is_renamed_from_the_group_page(self, admin_browser, desktop_group):
        data = form_data(admin_browser.get(change_url(desktop_group)))
        data["desktop-0-friendly_name"] = "Finance desktop"
        assert admin_browser.post(change_url(desktop_group), data).status_code == 302
        assert Desktop.objects.get(application_group=desktop_group).friendly_name == "Finance desktop"

    def test_a_remoteapp_group_shows_its_remoteapps_and_assignments(self, admin_browser, estate):
        group = estate[ApplicationGroup]
        shown = inlines(admin_browser.get(change_url(group)))
        assert set(shown) == {RemoteApp, Assignment}
        assert [form.instance for form in shown[RemoteApp].formset.forms] == [estate[RemoteApp]]
        assert [form.instance for form in shown[Assignment].formset.forms] == [estate[Assignment]]

    def test_remoteapps_and_assignments_are_added_from_the_group_page(self, admin_browser, remoteapp_group, member):
        data = form_data(admin_browser.get(change_url(remoteapp_group)))
        add_inline_rows(data, "remote_apps", [{"name": "calc", "friendly_name": "Calculator",
                                               "file_path": r"C:\Windows\calc.exe",
                                               "command_line_setting": "do_not_allow", "show_in_feed": "on"}])
        add_inline_rows(data, "assignments", [{"user": member.pk}])
        response = admin_browser.post(change_url(remoteapp_group), data)
        assert response.status_code == 302, error_text(response)
        assert list(remoteapp_group.remote_apps.values_list("name", flat=True)) == ["calc"]
        assert list(remoteapp_group.assignments.values_list("user", flat=True)) == [member.pk]

    def test_adding_a_desktop_group_creates_its_desktop(self, admin_browser, personal_pool):
        data = form_data(admin_browser.get(reverse("admin:feed_applicationgroup_add")))
        data.update(name="dag-personal", friendly_name="My PC", group_type="desktop", host_pool=personal_pool.pk)
        response = admin_browser.post(reverse("admin:feed_applicationgroup_add"), data)
        assert response.status_code == 302, error_text(response)
        assert ApplicationGroup.objects.get(name="dag-personal").desktop.friendly_name == "My PC"

    def test_adding_a_desktop_group_with_remoteapps_is_refused_on_the_form(self, admin_browser, pooled_pool):
        data = form_data(admin_browser.get(reverse("admin:feed_applicationgroup_add")))
        data.update(name="dag-new", group_type="desktop", host_pool=pooled_pool.pk)
        add_inline_rows(data, "remote_apps", [{"name": "calc", "friendly_name": "Calculator", "file_path": "calc.exe",
                                               "command_line_setting": "do_not_allow"}])
        response = admin_browser.post(reverse("admin:feed_applicationgroup_add"), data)
        assert response.status_code == 200
        assert "RemoteApps belong to a RemoteApp application group" in error_text(response)
        assert not ApplicationGroup.objects.filter(name="dag-new").exists()

    def test_a_remoteapp_group_in_a_personal_pool_is_refused_on_the_form(self, admin_browser, personal_pool):
        data = form_data(admin_browser.get(reverse("admin:feed_applicationgroup_add")))
        data.update(name="rag-new", group_type="remoteapp", host_pool=personal_pool.pk)
        response = admin_browser.post(reverse("admin:feed_applicationgroup_add"), data)
        assert response.status_code == 200
        assert "RemoteApp groups can only use a pooled host pool" in error_text(response)

    def test_two_remoteapps_named_alike_are_refused_on_the_form(self, admin_browser, remoteapp_group):
        data = form_data(admin_browser.get(change_url(remoteapp_group)))
        add_inline_rows(data, "remote_apps", [
            {"name": name, "friendly_name": name, "file_path": "word.exe", "command_line_setting": "do_not_allow"}
            for name in ("Word", "word")
        ])
        response = admin_browser.post(change_url(remoteapp_group), data)
        assert response.status_code == 200
        assert "used twice" in error_text(response)
        assert not remoteapp_group.remote_apps.exists()

    def test_the_same_assignee_twice_is_refused_on_the_form(self, admin_browser, remoteapp_group):
        finance = Group.objects.create(name="Finance")
        data = form_data(admin_browser.get(change_url(remoteapp_group)))
        add_inline_rows(data, "assignments", [{"group": finance.pk}, {"group": finance.pk}])
        response = admin_browser.post(change_url(remoteapp_group), data)
        assert response.status_code == 200
        assert "assigned twice" in error_text(response)
        assert not remoteapp_group.assignments.exists()

    def test_an_assignment_to_both_a_user_and_a_group_is_refused_on_the_form(self, admin_browser, remoteapp_group,
                                                                              member):
        finance = Group.objects.create(name="Finance")
        data = form_data(admin_browser.get(change_url(remoteapp_group)))
        add_inline_rows(data, "assignments", [{"user": member.pk, "group": finance.pk}])
        response = admin_browser.post(change_url(remoteapp_group), data)
        assert response.status_code == 200
        assert "Assign either a user or a group" in error_text(response)

    def test_the_remoteapp_form_offers_only_remoteapp_groups(self, admin_browser, desktop_group, remoteapp_group):
        response = admin_browser.get(reverse("admin:feed_remoteapp_add"))
        choices = set(response.context["adminform"].form.fields["application_group"].queryset)
        assert choices == {remoteapp_group}


class TestHostPoolPage:
    def test_it_lists_the_pools_hosts_read_only(self, admin_browser, pooled_pool, personal_pool):
        for name in ("sh-01", "sh-02"):
            SessionHost.objects.create(name=name, host_pool=pooled_pool)
        SessionHost.objects.create(name="pd-01", host_pool=personal_pool)
        response = admin_browser.get(change_url(pooled_pool))
        hosts = inlines(response)[SessionHost]
        assert [form.instance.name for form in hosts.formset.forms] == ["sh-01", "sh-02"]
        assert (hosts.has_add_permission, hosts.has_delete_permission) == (False, False)
        assert set(hosts.formset.forms[0].fields) <= {"id", "host_pool"}  # every shown column is read-only
        page = response.content.decode()
        assert change_url(SessionHost.objects.get(name="sh-01")) in page


class TestSessionHostPage:
    def test_it_shows_the_status_changes_newest_first(self, admin_browser, pooled_pool):
        host = SessionHost.objects.create(name="sh-01", host_pool=pooled_pool)
        host.set_status("available", "first heartbeat")
        host.set_status("needs_assistance", "disk C: 98% full")
        page = admin_browser.get(change_url(host)).content.decode()
        assert page.index("disk C: 98% full") < page.index("first heartbeat")
        assert f"?session_host__id__exact={host.pk}" in page

    def test_only_drain_mode_and_assigned_user_are_editable(self, admin_browser, pooled_pool):
        host = SessionHost.objects.create(name="sh-01", host_pool=pooled_pool)
        form = admin_browser.get(change_url(host)).context["adminform"].form
        assert set(form.fields) == {"allow_new_sessions", "assigned_user"}

    def test_saving_writes_only_what_the_admin_changed(self, admin_browser, pooled_pool):
        # The agent updates status and heartbeat on this row all the time; a save that wrote every
        # column could put back values read a moment earlier.
        host = SessionHost.objects.create(name="sh-01", host_pool=pooled_pool)
        data = form_data(admin_browser.get(change_url(host)))
        data.pop("allow_new_sessions")  # untick: drain mode on
        with CaptureQueriesContext(connection) as captured:
            assert admin_browser.post(change_url(host), data).status_code == 302
        [update] = [q["sql"] for q in captured if q["sql"].startswith('UPDATE "broker_sessionhost"')]
        assert '"allow_new_sessions"' in update
        for reported in ('"status"', '"last_heartbeat_at"', '"health_checks"', '"agent_version"'):
            assert reported not in update
        assert SessionHost.objects.get(pk=host.pk).allow_new_sessions is False

    def test_assigning_a_user_on_a_pooled_host_is_refused_on_the_form(self, admin_browser, pooled_pool, member):
        host = SessionHost.objects.create(name="sh-01", host_pool=pooled_pool)
        data = form_data(admin_browser.get(change_url(host)))
        data["assigned_user"] = member.pk
        response = admin_browser.post(change_url(host), data)
        assert response.status_code == 200
        assert "Only hosts in a personal host pool have an assigned user" in error_text(response)


class TestConnectionPage:
    def test_it_shows_every_checkpoint_and_the_duration(self, admin_browser, estate):
        record = estate[Connection]
        page = admin_browser.get(change_url(record)).content.decode()
        for label, at, since in [
            ("Request received", record.created_at, "0.000 s"),
            ("Ticket accepted", record.ticket_accepted_at, "0.100 s"),
            ("Host selected", record.host_selected_at, "0.250 s"),
            ("Host notified", record.host_notified_at, "0.300 s"),
            ("Host connected", record.host_connected_at, "0.900 s"),
            ("Relay started", record.relay_started_at, "1.500 s"),
            ("Ended", record.ended_at, "301.500 s"),
        ]:
            assert f"<td>{label}</td><td>{at:%Y-%m-%d %H:%M:%S} UTC</td><td>{since}</td>" in page
        assert "300.000 s" in page  # duration: relay start to end

    def test_the_list_shows_the_duration_and_error_code(self, admin_browser, estate):
        page = admin_browser.get(reverse("admin:broker_connection_changelist")).content.decode()
        assert "300.000 s" in page
        assert "ConnectionFailedNoHealthyRdshAvailable" in page


class TestDeletion:
    """Objects that go with their parent do not block the parent's deletion, though they are not
    deletable on their own."""

    def test_deleting_a_desktop_group_deletes_its_desktop(self, admin_browser, desktop_group):
        url = reverse("admin:feed_applicationgroup_delete", args=[desktop_group.pk])
        assert admin_browser.post(url, {"post": "yes"}).status_code == 302
        assert not ApplicationGroup.objects.filter(pk=desktop_group.pk).exists()
        assert not Desktop.objects.filter(application_group_id=desktop_group.pk).exists()

    def test_deleting_desktop_groups_in_bulk_works(self, admin_browser, desktop_group):
        response = admin_browser.post(reverse("admin:feed_applicationgroup_changelist"), {
            "action": "delete_selected", "_selected_action": [desktop_group.pk], "post": "yes"})
        assert response.status_code == 302
        assert not ApplicationGroup.objects.filter(pk=desktop_group.pk).exists()

    def test_a_desktop_cannot_be_deleted_on_its_own(self, admin_browser, desktop_group):
        url = reverse("admin:feed_desktop_delete", args=[desktop_group.desktop.pk])
        assert admin_browser.post(url, {"post": "yes"}).status_code == 403
        assert Desktop.objects.filter(application_group=desktop_group).exists()

    def test_deleting_a_session_host_deletes_its_history_and_sessions(self, admin_browser, estate):
        host = estate[SessionHost]
        assert host.status_changes.exists() and host.user_sessions.exists()
        url = reverse("admin:broker_sessionhost_delete", args=[host.pk])
        assert admin_browser.post(url, {"post": "yes"}).status_code == 302
        assert not SessionHost.objects.filter(pk=host.pk).exists()
        assert Connection.objects.get(pk=estate[Connection].pk).session_host is None

    def test_deleting_a_user_deletes_their_api_tokens(self, admin_browser, estate, member):
        url = reverse("admin:auth_user_delete", args=[member.pk])
        assert admin_browser.post(url, {"post": "yes"}).status_code == 302
        assert not ApiToken.objects.filter(user_id=member.pk).exists()
