"""Workspaces, application groups, assignments, desktops and RemoteApps over the API."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace

# --- workspaces ----------------------------------------------------------------------------------


def test_workspace_crud(admin_api):
    created = admin_api.post("/api/v1/workspaces/", {"name": "fabrikam", "friendly_name": "Fabrikam"})
    assert created.status_code == 201, created.json()
    url = f"/api/v1/workspaces/{created.json()['id']}/"
    assert admin_api.patch(url, {"description": "Head office"}).json()["description"] == "Head office"
    assert admin_api.get(url).json()["friendly_name"] == "Fabrikam"
    assert admin_api.delete(url).status_code == 204
    assert admin_api.get(url).status_code == 404


def test_a_workspace_name_is_unique_whatever_its_case(admin_api, workspace):
    response = admin_api.post("/api/v1/workspaces/", {"name": "CONTOSO"})
    assert response.status_code == 400
    assert response.json() == {"name": ["A workspace with this name already exists."]}


def test_renaming_a_workspace_onto_another_is_refused(admin_api, workspace):
    other = Workspace.objects.create(name="fabrikam")
    response = admin_api.patch(f"/api/v1/workspaces/{other.pk}/", {"name": "Contoso"})
    assert response.status_code == 400
    assert "name" in response.json()
    other.refresh_from_db()
    assert other.name == "fabrikam"


def test_deleting_a_workspace_keeps_its_application_groups(admin_api, desktop_group, workspace):
    assert admin_api.delete(f"/api/v1/workspaces/{workspace.pk}/").status_code == 204
    desktop_group.refresh_from_db()
    assert desktop_group.workspace is None


# --- application groups --------------------------------------------------------------------------


def test_creating_a_desktop_group_creates_its_desktop(admin_api, pooled_pool, workspace):
    response = admin_api.post("/api/v1/applicationgroups/", {
        "name": "dag-b", "friendly_name": "Finance desktop", "group_type": "desktop",
        "host_pool": pooled_pool.pk, "workspace": workspace.pk,
    })
    assert response.status_code == 201, response.json()
    assert response.json()["host_pool_name"] == "pool-a"
    desktop = Desktop.objects.get(application_group_id=response.json()["id"])
    assert desktop.friendly_name == "Finance desktop"


def test_a_remoteapp_group_in_a_personal_pool_is_refused(admin_api, personal_pool):
    response = admin_api.post("/api/v1/applicationgroups/", {
        "name": "rag-b", "group_type": "remoteapp", "host_pool": personal_pool.pk,
    })
    assert response.status_code == 400
    assert response.json() == {"host_pool": ["RemoteApp groups can only use a pooled host pool."]}
    assert not ApplicationGroup.objects.filter(name="rag-b").exists()


def test_moving_a_remoteapp_group_to_a_personal_pool_is_refused(admin_api, remoteapp_group, personal_pool):
    response = admin_api.patch(f"/api/v1/applicationgroups/{remoteapp_group.pk}/", {"host_pool": personal_pool.pk})
    assert response.status_code == 400
    assert "host_pool" in response.json()


def test_the_group_type_cannot_change_after_creation(admin_api, remoteapp_group):
    response = admin_api.patch(f"/api/v1/applicationgroups/{remoteapp_group.pk}/", {"group_type": "desktop"})
    assert response.status_code == 400
    assert "group_type" in response.json()
    remoteapp_group.refresh_from_db()
    assert remoteapp_group.group_type == "remoteapp"


def test_an_application_group_needs_a_type_and_a_known_pool(admin_api):
    response = admin_api.post("/api/v1/applicationgroups/", {"name": "x", "host_pool": 999999})
    assert response.status_code == 400
    assert set(response.json()) == {"group_type", "host_pool"}


def test_an_application_group_name_is_unique_whatever_its_case(admin_api, desktop_group, pooled_pool):
    response = admin_api.post("/api/v1/applicationgroups/", {
        "name": "DAG-A", "group_type": "desktop", "host_pool": pooled_pool.pk,
    })
    assert response.status_code == 400
    assert response.json() == {"name": ["An application group with this name already exists."]}
    assert Desktop.objects.count() == 1


def test_deleting_an_application_group_deletes_its_desktop_and_assignments(admin_api, desktop_group):
    assert admin_api.delete(f"/api/v1/applicationgroups/{desktop_group.pk}/").status_code == 204
    assert not Desktop.objects.exists()
    assert not Assignment.objects.exists()


def test_application_groups_filter_by_type_pool_and_workspace(
    admin_api, desktop_group, remoteapp_group, personal_pool, workspace
):
    def names(query: str) -> list[str]:
        return [g["name"] for g in admin_api.get(f"/api/v1/applicationgroups/?{query}").json()["results"]]

    assert names("group_type=remoteapp") == ["rag-a"]
    assert names(f"workspace={workspace.pk}") == ["dag-a", "rag-a"]
    assert names(f"host_pool={personal_pool.pk}") == []
    assert names("search=Office apps") == ["rag-a"]
    assert names("ordering=-name") == ["rag-a", "dag-a"]


# --- assignments ---------------------------------------------------------------------------------


def test_assign_a_user_and_a_group(admin_api, remoteapp_group, outsider):
    staff = Group.objects.create(name="staff")
    by_user = admin_api.post("/api/v1/assignments/", {"application_group": remoteapp_group.pk, "user": outsider.pk})
    by_group = admin_api.post("/api/v1/assignments/", {"application_group": remoteapp_group.pk, "group": staff.pk})
    assert by_user.status_code == 201, by_user.json()
    assert by_group.status_code == 201, by_group.json()
    assert by_user.json()["username"] == "outsider"
    assert by_group.json()["group_name"] == "staff"
    assert by_group.json()["user"] is None


@pytest.mark.parametrize("who", ["both", "neither"])
def test_an_assignment_names_a_user_or_a_group(admin_api, remoteapp_group, outsider, who):
    data = {"application_group": remoteapp_group.pk}
    if who == "both":
        data |= {"user": outsider.pk, "group": Group.objects.create(name="staff").pk}
    response = admin_api.post("/api/v1/assignments/", data)
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Assign either a user or a group, not both or neither."]}


def test_the_same_user_cannot_be_assigned_twice(admin_api, desktop_group, member):
    response = admin_api.post("/api/v1/assignments/", {"application_group": desktop_group.pk, "user": member.pk})
    assert response.status_code == 400
    assert response.json() == {"user": ["This user is already assigned to the group."]}


def test_assignments_filter_by_application_group(admin_api, desktop_group, remoteapp_group, outsider):
    Assignment.objects.create(application_group=remoteapp_group, user=outsider)
    response = admin_api.get(f"/api/v1/assignments/?application_group={remoteapp_group.pk}")
    assert [a["username"] for a in response.json()["results"]] == ["outsider"]
    assert admin_api.get("/api/v1/assignments/?application_group=999999").status_code == 400


# --- desktops ------------------------------------------------------------------------------------


def test_desktops_cannot_be_created_or_deleted_directly(admin_api, desktop, desktop_group):
    assert admin_api.post("/api/v1/desktops/", {"application_group": desktop_group.pk}).status_code == 405
    assert admin_api.delete(f"/api/v1/desktops/{desktop.pk}/").status_code == 405
    assert Desktop.objects.filter(pk=desktop.pk).exists()


def test_a_desktop_can_be_renamed_but_not_moved(admin_api, desktop, remoteapp_group):
    other_group = ApplicationGroup.objects.create(
        name="dag-b", group_type="desktop", host_pool=remoteapp_group.host_pool
    )
    response = admin_api.patch(
        f"/api/v1/desktops/{desktop.pk}/", {"friendly_name": "Work desktop", "application_group": other_group.pk}
    )
    assert response.status_code == 200, response.json()
    desktop.refresh_from_db()
    assert desktop.friendly_name == "Work desktop"
    assert desktop.application_group.name == "dag-a"


def test_a_desktop_keeps_its_icon_when_updated(admin_api, desktop):
    from feed.icons import default_icon_png_32

    icon = default_icon_png_32("desktop")
    Desktop.objects.filter(pk=desktop.pk).update(icon=icon, icon_content_type="image/png")
    assert admin_api.patch(f"/api/v1/desktops/{desktop.pk}/", {"description": "x"}).status_code == 200
    desktop.refresh_from_db()
    assert bytes(desktop.icon) == icon


# --- RemoteApps ----------------------------------------------------------------------------------


def test_publish_a_remoteapp(admin_api, remoteapp_group):
    response = admin_api.post("/api/v1/remoteapps/", {
        "application_group": remoteapp_group.pk, "name": "calc", "friendly_name": "Calculator",
        "file_path": r"C:\Windows\System32\calc.exe",
    })
    assert response.status_code == 201, response.json()
    assert response.json()["command_line_setting"] == "do_not_allow"
    assert response.json()["show_in_feed"] is True


def test_a_remoteapp_name_is_unique_in_its_group_whatever_its_case(admin_api, remote_app, remoteapp_group):
    response = admin_api.post("/api/v1/remoteapps/", {
        "application_group": remoteapp_group.pk, "name": "NOTEPAD", "friendly_name": "Notepad",
        "file_path": "notepad.exe",
    })
    assert response.status_code == 400
    assert response.json() == {"name": ["This group already has a RemoteApp with this name."]}


def test_the_same_remoteapp_name_is_fine_in_another_group(admin_api, remote_app, pooled_pool):
    other = ApplicationGroup.objects.create(name="rag-b", group_type="remoteapp", host_pool=pooled_pool)
    response = admin_api.post("/api/v1/remoteapps/", {
        "application_group": other.pk, "name": "notepad", "friendly_name": "Notepad", "file_path": "notepad.exe",
    })
    assert response.status_code == 201, response.json()


def test_a_remoteapp_in_a_desktop_group_is_refused(admin_api, desktop_group):
    response = admin_api.post("/api/v1/remoteapps/", {
        "application_group": desktop_group.pk, "name": "calc", "friendly_name": "Calculator", "file_path": "calc.exe",
    })
    assert response.status_code == 400
    assert response.json() == {"application_group": ["RemoteApps belong to a RemoteApp application group."]}


def test_required_arguments_must_be_given(admin_api, remote_app):
    response = admin_api.patch(f"/api/v1/remoteapps/{remote_app.pk}/", {"command_line_setting": "require"})
    assert response.status_code == 400
    assert response.json() == {"command_line_arguments": ["Give the arguments when they are required."]}
    remote_app.refresh_from_db()
    assert remote_app.command_line_setting == "do_not_allow"


def test_remoteapps_filter_by_group_and_visibility(admin_api, remote_app, remoteapp_group):
    RemoteApp.objects.create(application_group=remoteapp_group, name="calc", friendly_name="Calculator",
                             file_path="calc.exe", show_in_feed=False)

    def names(query: str) -> list[str]:
        return [a["name"] for a in admin_api.get(f"/api/v1/remoteapps/?{query}").json()["results"]]

    assert names(f"application_group={remoteapp_group.pk}") == ["calc", "notepad"]
    assert names("show_in_feed=false") == ["calc"]
    assert names("search=notepad.exe") == ["notepad"]


# --- text that reaches .rdp files and feeds --------------------------------------------------------


@pytest.mark.parametrize("text", ["Office\r\nalternate shell:s:cmd.exe", "Office\x1b[31m", "Office\u2028Two"])
def test_a_desktop_title_with_a_line_break_or_control_character_is_refused(admin_api, desktop_group, text):
    # Stored, it would break the .rdp file of every user of the desktop (a line break starts a setting).
    desktop = desktop_group.desktop
    response = admin_api.patch(f"/api/v1/desktops/{desktop.pk}/", {"friendly_name": text}, format="json")

    assert response.status_code == 400 and "friendly_name" in response.json()
    desktop.refresh_from_db()
    assert desktop.friendly_name != text


@pytest.mark.parametrize("field", ["file_path", "command_line_arguments", "friendly_name"])
def test_a_remoteapp_path_arguments_or_title_with_a_line_break_are_refused(admin_api, remoteapp_group, field):
    data = {"application_group": remoteapp_group.pk, "name": "calc", "friendly_name": "Calculator",
            "file_path": r"C:\Windows\calc.exe", "command_line_setting": "require",
            "command_line_arguments": "/x", field: "a\nremoteapplicationprogram:s:evil.exe"}
    response = admin_api.post("/api/v1/remoteapps/", data, format="json")
    assert response.status_code == 400 and field in response.json()


def test_a_description_may_span_lines_but_holds_no_control_characters(admin_api, workspace):
    url = f"/api/v1/workspaces/{workspace.pk}/"
    assert admin_api.patch(url, {"description": "Line one\r\nLine two\twith a tab"}, format="json").status_code == 200
    assert admin_api.patch(url, {"description": "bell\x07"}, format="json").status_code == 400
