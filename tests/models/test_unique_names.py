"""Names are unique whatever their case: workspaces, host pools, application groups, session hosts, and
RemoteApps within their group. Checked by full_clean() and by the database's unique index on lower(name)."""
from __future__ import annotations

import pytest

from broker.models import HostPool, SessionHost
from feed.models import ApplicationGroup, RemoteApp, Workspace
from tests.models.refusals import assert_invalid, refused_by_database

pytestmark = pytest.mark.django_db

# (label, constraint name, how to make an unsaved object with a name, given a pooled pool)
NAMED = [
    pytest.param(lambda name, pool: Workspace(name=name), "workspace_name_unique_ci", id="workspace"),
    pytest.param(lambda name, pool: HostPool(name=name), "hostpool_name_unique_ci", id="host-pool"),
    pytest.param(lambda name, pool: ApplicationGroup(name=name, group_type="remoteapp", host_pool=pool),
                 "applicationgroup_name_unique_ci", id="application-group"),
    pytest.param(lambda name, pool: SessionHost(name=name, host_pool=pool), "sessionhost_name_unique_ci",
                 id="session-host"),
]


@pytest.mark.parametrize(("make", "constraint"), NAMED)
def test_the_model_refuses_a_name_that_differs_only_in_case(make, constraint, pooled_pool):
    make("Sales-01", pooled_pool).save()
    assert_invalid(make("SALES-01", pooled_pool), "already exists")


@pytest.mark.parametrize(("make", "constraint"), NAMED)
def test_the_database_refuses_a_name_that_differs_only_in_case(make, constraint, pooled_pool):
    first = make("Sales-01", pooled_pool)
    first.save()
    with refused_by_database(constraint):
        type(first).objects.bulk_create([make("sales-01", pooled_pool)])


@pytest.mark.parametrize(("make", "constraint"), NAMED)
def test_a_different_name_is_accepted(make, constraint, pooled_pool):
    make("Sales-01", pooled_pool).save()
    second = make("Sales-02", pooled_pool)
    second.full_clean()
    second.save()


def remote_app(group: ApplicationGroup, name: str) -> RemoteApp:
    return RemoteApp(application_group=group, name=name, friendly_name=name, file_path=r"C:\Windows\notepad.exe")


class TestRemoteAppNamesAreUniquePerGroup:
    def test_the_model_refuses_a_name_that_differs_only_in_case(self, remoteapp_group):
        remote_app(remoteapp_group, "Notepad").save()
        assert_invalid(remote_app(remoteapp_group, "NOTEPAD"), "This group already has a RemoteApp with this name.")

    def test_the_database_refuses_a_name_that_differs_only_in_case(self, remoteapp_group):
        remote_app(remoteapp_group, "Notepad").save()
        with refused_by_database("remoteapp_name_unique_in_group_ci"):
            RemoteApp.objects.bulk_create([remote_app(remoteapp_group, "notepad")])

    def test_the_same_name_is_accepted_in_another_group(self, remoteapp_group, pooled_pool):
        other_group = ApplicationGroup.objects.create(name="rag-b", group_type="remoteapp", host_pool=pooled_pool)
        remote_app(remoteapp_group, "Notepad").save()
        app = remote_app(other_group, "notepad")
        app.full_clean()
        app.save()
