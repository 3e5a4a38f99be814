"""feed.resources: who sees which desktops and RemoteApps, in two queries whatever their number."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from feed.models import ApplicationGroup, Assignment, RemoteApp
from feed.resources import DESKTOP, REMOTEAPP, resource_for, resources_for
from tests.feed.conftest import make_many_resources


def _keys(user, **kwargs) -> list[str]:
    return [resource.key for resource in resources_for(user, **kwargs)]


def test_a_member_sees_the_desktop_assigned_to_them(member, desktop_group):
    [desktop] = resources_for(member)

    assert (desktop.kind, desktop.key, desktop.title) == (DESKTOP, "dag-a/desktop", "Office desktop")
    assert (desktop.workspace_title, desktop.host_pool_name) == ("Contoso Workspace", "pool-a")


def test_a_member_sees_remoteapps_assigned_to_one_of_their_groups(member, desktop_group, apps_through_group):
    app = resource_for(member, "rag-a", "notepad")

    assert _keys(member) == ["dag-a/desktop", "rag-a/notepad"]
    assert (app.kind, app.title, app.program) == (REMOTEAPP, "Notepad", r"C:\Windows\System32\notepad.exe")
    assert app.file_extensions == (".txt", ".log")


def test_an_outsider_sees_nothing_and_finds_nothing(outsider, desktop_group, apps_through_group):
    assert resources_for(outsider) == []
    assert resource_for(outsider, "dag-a", "desktop") is None
    assert resource_for(outsider, "rag-a", "notepad") is None


def test_anonymous_and_disabled_users_see_nothing(member, desktop_group):
    member.is_active = False
    member.save()

    assert resources_for(AnonymousUser()) == []
    assert resources_for(member) == []


def test_groups_outside_a_workspace_are_not_published(member, desktop_group):
    ApplicationGroup.objects.filter(pk=desktop_group.pk).update(workspace=None)

    assert resources_for(member) == []
    assert resource_for(member, "dag-a", "desktop") is None


def test_hidden_remoteapps_are_not_listed_but_stay_launchable(member, apps_through_group):
    RemoteApp.objects.filter(pk=apps_through_group.pk).update(show_in_feed=False)

    assert _keys(member) == []
    assert _keys(member, include_hidden=True) == ["rag-a/notepad"]
    assert resource_for(member, "rag-a", "notepad").show_in_feed is False


def test_a_desktop_and_a_remoteapp_named_desktop_are_told_apart(member, desktop_group, remoteapp_group):
    RemoteApp.objects.create(application_group=remoteapp_group, name="desktop", friendly_name="Desktop tool",
                             file_path="/usr/bin/tool")
    Assignment.objects.create(application_group=remoteapp_group, user=member)

    assert resource_for(member, "dag-a", "desktop").kind == DESKTOP
    assert resource_for(member, "rag-a", "desktop").kind == REMOTEAPP


def test_lookups_ignore_case_like_the_names_do(member, desktop_group):
    assert resource_for(member, "DAG-A", "Desktop").key == "dag-a/desktop"


def test_command_line_arguments_follow_the_apps_policy(member, apps_through_group):
    app = apps_through_group
    app.command_line_arguments = "/safe"
    app.command_line_setting = "do_not_allow"
    app.save()
    assert resource_for(member, "rag-a", "notepad").command_line == ""

    app.command_line_setting = "require"
    app.save()
    assert resource_for(member, "rag-a", "notepad").command_line == "/safe"


def test_unusable_file_extensions_are_dropped_not_fatal(member, apps_through_group):
    RemoteApp.objects.filter(pk=apps_through_group.pk).update(file_extensions="txt, .a b, .LOG, .txt")

    assert resource_for(member, "rag-a", "notepad").file_extensions == (".txt", ".log")


@pytest.mark.parametrize("count", [1, 8])
def test_listing_takes_two_queries_however_many_resources(member, staff_group, django_assert_num_queries, count):
    make_many_resources(member, count)

    with django_assert_num_queries(2):
        resources = resources_for(member)

    assert len(resources) == 2 * count
