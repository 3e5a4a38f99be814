"""Application groups: a desktop group has exactly one Desktop, RemoteApps live in RemoteApp groups in
pooled pools, and a group's type never changes. Each rule is checked by full_clean() and by the database."""
from __future__ import annotations

import pytest

from feed.models import ApplicationGroup, Desktop, RemoteApp
from tests.models.refusals import assert_invalid, execute, refused_by_database

pytestmark = pytest.mark.django_db


def remote_app(group: ApplicationGroup, name: str = "notepad") -> RemoteApp:
    return RemoteApp(application_group=group, name=name, friendly_name=name.title(), file_path=rf"C:\Apps\{name}.exe")


class TestADesktopGroupHasExactlyOneDesktop:
    def test_a_desktop_group_is_created_with_its_desktop(self, pooled_pool):
        group = ApplicationGroup.objects.create(
            name="dag-new", friendly_name="Finance desktop", group_type="desktop", host_pool=pooled_pool
        )
        assert list(Desktop.objects.filter(application_group=group).values_list("friendly_name", flat=True)) == [
            "Finance desktop"
        ]

    def test_a_remoteapp_group_is_created_without_a_desktop(self, remoteapp_group):
        assert not Desktop.objects.filter(application_group=remoteapp_group).exists()

    def test_the_model_refuses_a_second_desktop(self, desktop_group):
        assert_invalid(Desktop(application_group=desktop_group), "already exists")

    def test_the_database_refuses_a_second_desktop(self, desktop_group):
        # A one-to-one column: the unique index refuses it; SQLite names the column, PostgreSQL the index.
        with refused_by_database("application_group_id"):
            Desktop.objects.bulk_create([Desktop(application_group=desktop_group)])

    def test_deleting_the_group_deletes_its_desktop(self, desktop_group):
        desktop_pk = desktop_group.desktop.pk
        desktop_group.assignments.all().delete()
        desktop_group.delete()
        assert not Desktop.objects.filter(pk=desktop_pk).exists()


class TestADesktopOnlyInADesktopGroup:
    def test_the_model_refuses_a_desktop_in_a_remoteapp_group(self, remoteapp_group):
        assert_invalid(Desktop(application_group=remoteapp_group), "A Desktop belongs to a desktop application group")

    def test_the_database_refuses_inserting_a_desktop_in_a_remoteapp_group(self, remoteapp_group):
        with refused_by_database("a Desktop belongs to a desktop application group"):
            execute(
                "INSERT INTO feed_desktop (application_group_id, friendly_name, description, icon_content_type, "
                "updated_at) VALUES (%s, 'Sneaky', '', '', CURRENT_TIMESTAMP)",
                [remoteapp_group.pk],
            )

    def test_the_database_refuses_moving_a_desktop_to_a_remoteapp_group(self, desktop_group, remoteapp_group):
        with refused_by_database("a Desktop belongs to a desktop application group"):
            Desktop.objects.filter(application_group=desktop_group).update(application_group=remoteapp_group)

    def test_the_database_accepts_editing_a_desktop(self, desktop_group):
        Desktop.objects.filter(application_group=desktop_group).update(friendly_name="Renamed")
        assert Desktop.objects.get(application_group=desktop_group).friendly_name == "Renamed"


class TestARemoteAppOnlyInARemoteAppGroup:
    def test_the_model_accepts_a_remoteapp_in_a_remoteapp_group(self, remoteapp_group):
        remote_app(remoteapp_group).full_clean()

    def test_the_model_refuses_a_remoteapp_in_a_desktop_group(self, desktop_group):
        assert_invalid(remote_app(desktop_group), "RemoteApps belong to a RemoteApp application group")

    def test_the_database_refuses_inserting_a_remoteapp_in_a_desktop_group(self, desktop_group):
        with refused_by_database("RemoteApps belong to a RemoteApp application group"):
            RemoteApp.objects.bulk_create([remote_app(desktop_group)])

    def test_the_database_refuses_moving_a_remoteapp_to_a_desktop_group(self, desktop_group, remoteapp_group):
        app = remote_app(remoteapp_group)
        app.save()
        with refused_by_database("RemoteApps belong to a RemoteApp application group"):
            RemoteApp.objects.filter(pk=app.pk).update(application_group=desktop_group)


class TestARemoteAppGroupOnlyInAPooledPool:
    def test_the_model_refuses_a_new_remoteapp_group_in_a_personal_pool(self, personal_pool):
        group = ApplicationGroup(name="rag-personal", group_type="remoteapp", host_pool=personal_pool)
        assert_invalid(group, "RemoteApp groups can only use a pooled host pool")

    def test_the_model_refuses_moving_a_remoteapp_group_to_a_personal_pool(self, remoteapp_group, personal_pool):
        remoteapp_group.host_pool = personal_pool
        assert_invalid(remoteapp_group, "RemoteApp groups can only use a pooled host pool")

    def test_the_model_accepts_a_desktop_group_in_a_personal_pool(self, personal_pool):
        ApplicationGroup(name="dag-personal", group_type="desktop", host_pool=personal_pool).full_clean()

    def test_the_database_refuses_inserting_a_remoteapp_group_in_a_personal_pool(self, personal_pool):
        with refused_by_database("RemoteApp groups can only use a pooled host pool"):
            ApplicationGroup.objects.bulk_create(
                [ApplicationGroup(name="rag-personal", group_type="remoteapp", host_pool=personal_pool)]
            )

    def test_the_database_refuses_moving_a_remoteapp_group_to_a_personal_pool(self, remoteapp_group, personal_pool):
        with refused_by_database("RemoteApp groups can only use a pooled host pool"):
            ApplicationGroup.objects.filter(pk=remoteapp_group.pk).update(host_pool=personal_pool)

    def test_the_database_accepts_moving_a_desktop_group_to_a_personal_pool(self, desktop_group, personal_pool):
        ApplicationGroup.objects.filter(pk=desktop_group.pk).update(host_pool=personal_pool)
        assert ApplicationGroup.objects.get(pk=desktop_group.pk).host_pool == personal_pool


class TestTheGroupTypeIsFixed:
    def test_the_model_refuses_changing_the_group_type(self, desktop_group):
        desktop_group.group_type = "remoteapp"
        assert_invalid(desktop_group, "An application group's type cannot change")

    def test_the_database_refuses_changing_the_group_type(self, remoteapp_group):
        with refused_by_database("an application group type cannot change after it is created"):
            ApplicationGroup.objects.filter(pk=remoteapp_group.pk).update(group_type="desktop")

    def test_the_database_accepts_other_changes(self, remoteapp_group):
        ApplicationGroup.objects.filter(pk=remoteapp_group.pk).update(friendly_name="Renamed apps")
        assert ApplicationGroup.objects.get(pk=remoteapp_group.pk).friendly_name == "Renamed apps"

    def test_the_database_refuses_an_unknown_group_type(self, pooled_pool):
        with refused_by_database("applicationgroup_type_valid"):
            ApplicationGroup.objects.bulk_create(
                [ApplicationGroup(name="odd", group_type="spreadsheet", host_pool=pooled_pool)]
            )
