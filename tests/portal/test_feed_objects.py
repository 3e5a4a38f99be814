"""Workspaces, application groups, desktops, RemoteApps and assignments: created and edited with the
models' rules and messages, what was typed kept, and objects deleted meanwhile answered clearly."""
from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from lxml import html
from PIL import Image

from feed.icons import MAX_ICON_BYTES
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace


def png(side: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), (30, 90, 200, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def group_data(pool, workspace=None, **changes) -> dict:
    return {"name": "dag-new", "friendly_name": "New desktop", "description": "", "group_type": "desktop",
            "host_pool": pool.pk, "workspace": workspace.pk if workspace else "", **changes}


APP = {"name": "wordpad", "friendly_name": "WordPad", "description": "", "file_path": r"C:\wordpad.exe",
       "command_line_setting": "do_not_allow", "command_line_arguments": "", "file_extensions": "",
       "show_in_feed": "on"}


# --- workspaces -------------------------------------------------------------------------------------

def test_an_admin_creates_and_edits_a_workspace(staff, db):
    staff.post(reverse("portal:workspace-create"), {"name": "fabrikam", "friendly_name": "Fabrikam"})
    workspace = Workspace.objects.get(name="fabrikam")

    staff.post(reverse("portal:workspace-edit", args=[workspace.pk]), {"name": "fabrikam", "friendly_name": "Fab"})

    workspace.refresh_from_db()
    assert workspace.friendly_name == "Fab"
    assert "Fab" in staff.get(reverse("portal:workspaces")).content.decode()


def test_a_duplicate_workspace_name_is_refused_with_the_models_message(staff, workspace):
    response = staff.post(reverse("portal:workspace-create"), {"name": "CONTOSO", "friendly_name": "Again"})

    assert response.status_code == 400
    assert "A workspace with this name already exists." in response.content.decode()
    assert html.fromstring(response.content).get_element_by_id("id_friendly_name").get("value") == "Again"


def test_a_workspace_deleted_meanwhile_gets_a_clear_page(staff, workspace):
    pk = workspace.pk
    workspace.delete()

    response = staff.post(reverse("portal:workspace-edit", args=[pk]), {"name": "contoso"})

    assert response.status_code == 404
    assert "This workspace no longer exists" in response.content.decode()


# --- application groups -----------------------------------------------------------------------------

def test_a_desktop_group_is_created_with_its_desktop(staff, pooled_pool, workspace):
    response = staff.post(reverse("portal:group-create"), group_data(pooled_pool, workspace))

    group = ApplicationGroup.objects.get(name="dag-new")
    assert response["Location"] == reverse("portal:group-detail", args=[group.pk])
    assert Desktop.objects.filter(application_group=group).exists()


def test_a_remoteapp_group_in_a_personal_pool_is_refused_with_the_models_message(staff, personal_pool):
    response = staff.post(reverse("portal:group-create"),
                          group_data(personal_pool, group_type="remoteapp", friendly_name="Kept"))

    assert response.status_code == 400
    assert response.context["form"].errors["host_pool"] == ["RemoteApp groups can only use a pooled host pool."]
    assert html.fromstring(response.content).get_element_by_id("id_friendly_name").get("value") == "Kept"


def test_a_host_pool_deleted_before_the_form_is_sent_is_a_field_error(staff, pooled_pool):
    data = group_data(pooled_pool)
    pooled_pool.delete()

    response = staff.post(reverse("portal:group-create"), data)

    assert response.status_code == 400 and "host_pool" in response.context["form"].errors


def test_a_groups_type_stays_as_created(staff, desktop_group, pooled_pool, workspace):
    staff.post(reverse("portal:group-edit", args=[desktop_group.pk]),
               group_data(pooled_pool, workspace, name="dag-a", group_type="remoteapp", friendly_name="Renamed"))

    desktop_group.refresh_from_db()
    assert (desktop_group.group_type, desktop_group.friendly_name) == ("desktop", "Renamed")


def test_the_group_create_form_can_start_from_a_pool(staff, pooled_pool):
    response = staff.get(reverse("portal:group-create"), {"host_pool": pooled_pool.pk})

    assert response.context["form"].initial["host_pool"] == pooled_pool.pk


@pytest.mark.parametrize("chosen", ["\u00b2", "1" * 40, "-1", "x"])
def test_a_pool_that_is_not_a_pool_id_is_ignored_when_the_group_form_opens(staff, pooled_pool, chosen):
    response = staff.get(reverse("portal:group-create"), {"host_pool": chosen})
    assert response.status_code == 200


def test_a_group_deleted_meanwhile_gets_a_clear_page_on_every_form(staff, desktop_group, pooled_pool):
    pk = desktop_group.pk
    desktop_group.delete()

    for name, data in [("group-edit", group_data(pooled_pool)), ("desktop-edit", {"friendly_name": "x"}),
                       ("app-create", APP), ("assignment-create", {"kind": "user", "principal": "member"})]:
        response = staff.post(reverse(f"portal:{name}", args=[pk]), data)
        assert response.status_code == 404, name
        assert "This application group no longer exists" in response.content.decode(), name


# --- desktops and RemoteApps ------------------------------------------------------------------------

def test_the_desktops_name_and_icon_are_edited(staff, desktop_group):
    response = staff.post(reverse("portal:desktop-edit", args=[desktop_group.pk]),
                          {"friendly_name": "Work PC", "description": "",
                           "icon_upload": SimpleUploadedFile("icon.png", png(), "image/png")})

    desktop = Desktop.objects.get(application_group=desktop_group)
    assert response.status_code == 302
    assert (desktop.friendly_name, desktop.icon_content_type) == ("Work PC", "image/png")


def test_an_icon_that_is_not_an_image_is_refused_on_its_field(staff, desktop_group):
    response = staff.post(reverse("portal:desktop-edit", args=[desktop_group.pk]),
                          {"friendly_name": "Work PC", "icon_upload": SimpleUploadedFile("x.png", b"not a png")})

    assert response.status_code == 400
    assert "icon_upload" in response.context["form"].errors
    assert Desktop.objects.get(application_group=desktop_group).friendly_name != "Work PC"


def test_an_oversized_icon_is_refused_before_it_is_read(staff, desktop_group):
    big = SimpleUploadedFile("big.png", b"\0" * (MAX_ICON_BYTES + 1), "image/png")

    response = staff.post(reverse("portal:desktop-edit", args=[desktop_group.pk]),
                          {"friendly_name": "Work PC", "icon_upload": big})

    assert "the limit is 256 KiB" in str(response.context["form"].errors["icon_upload"])


def test_a_remoteapp_is_added_and_edited(staff, remoteapp_group):
    staff.post(reverse("portal:app-create", args=[remoteapp_group.pk]), APP)
    app = RemoteApp.objects.get(application_group=remoteapp_group, name="wordpad")

    staff.post(reverse("portal:app-edit", args=[app.pk]), {**APP, "friendly_name": "WordPad 2"})

    app.refresh_from_db()
    assert app.friendly_name == "WordPad 2"


def test_remoteapp_rules_of_the_model_and_the_database_are_shown(staff, remoteapp_group):
    RemoteApp.objects.create(application_group=remoteapp_group, name="wordpad", friendly_name="W", file_path="w")

    duplicate = staff.post(reverse("portal:app-create", args=[remoteapp_group.pk]), {**APP, "name": "WORDPAD"})
    no_arguments = staff.post(reverse("portal:app-create", args=[remoteapp_group.pk]),
                              {**APP, "name": "paint", "command_line_setting": "require"})

    assert "This group already has a RemoteApp with this name." in duplicate.content.decode()
    assert "Give the arguments when they are required." in no_arguments.content.decode()
    assert html.fromstring(no_arguments.content).get_element_by_id("id_file_path").get("value") == r"C:\wordpad.exe"


def test_a_remoteapp_cannot_be_added_to_a_desktop_group(staff, desktop_group):
    response = staff.post(reverse("portal:app-create", args=[desktop_group.pk]), APP)

    assert response.status_code == 400
    assert "RemoteApps belong to a RemoteApp application group." in response.content.decode()


def test_a_remoteapp_deleted_meanwhile_gets_a_clear_page(staff, remoteapp_group):
    app = RemoteApp.objects.create(application_group=remoteapp_group, name="gone", friendly_name="G", file_path="g")
    pk = app.pk
    app.delete()

    response = staff.post(reverse("portal:app-edit", args=[pk]), APP)

    assert response.status_code == 404 and "This RemoteApp no longer exists" in response.content.decode()


# --- assignments ------------------------------------------------------------------------------------

def test_users_and_groups_are_assigned_by_name(staff, remoteapp_group, outsider):
    Group.objects.create(name="Finance")
    url = reverse("portal:assignment-create", args=[remoteapp_group.pk])

    staff.post(url, {"kind": "user", "principal": "OUTSIDER"})
    staff.post(url, {"kind": "group", "principal": "finance"})

    assert {str(a.user or a.group) for a in remoteapp_group.assignments.all()} == {"outsider", "Finance"}


def test_an_unknown_name_or_a_second_assignment_is_refused_and_kept(staff, desktop_group):
    unknown = staff.post(reverse("portal:assignment-create", args=[desktop_group.pk]),
                         {"kind": "user", "principal": "nobody"})
    again = staff.post(reverse("portal:assignment-create", args=[desktop_group.pk]),
                       {"kind": "user", "principal": "member"})

    assert unknown.status_code == 400 and "There is no user named “nobody”." in unknown.content.decode()
    assert html.fromstring(unknown.content).xpath("//input[@name='principal']")[0].get("value") == "nobody"
    assert again.status_code == 400 and "This user is already assigned to the group." in again.content.decode()
    assert desktop_group.assignments.count() == 1


def test_an_assignment_is_removed_and_removing_it_twice_is_harmless(staff, desktop_group):
    assignment = Assignment.objects.get(application_group=desktop_group)
    url = reverse("portal:assignment-delete", args=[assignment.pk])

    first = staff.post(url)
    second = staff.post(url, follow=True)

    assert first["Location"] == reverse("portal:group-detail", args=[desktop_group.pk])
    assert not desktop_group.assignments.exists()
    assert second.status_code == 200 and "That assignment had already been removed." in second.content.decode()


def test_the_picker_searches_users_and_groups(staff, member, outsider):
    Group.objects.create(name="Members of staff")
    member.first_name = "Maya"
    member.save()

    results = staff.get(reverse("portal:principal-search"), {"q": "mem"}).json()["results"]

    assert [(r["kind"], r["name"]) for r in results] == [("user", "member"), ("group", "Members of staff")]
    assert results[0]["label"] == "Maya (member)"
    assert staff.get(reverse("portal:principal-search"), {"q": ""}).json() == {"results": []}
    assert staff.get(reverse("portal:principal-search"), {"q": "x" * 5000}).status_code == 200


def test_the_group_page_lists_resources_and_assignments(staff, desktop_group, remoteapp_group):
    RemoteApp.objects.create(application_group=remoteapp_group, name="notepad", friendly_name="Notepad",
                             file_path="notepad.exe")

    desktop_page = staff.get(reverse("portal:group-detail", args=[desktop_group.pk])).content.decode()
    apps_page = staff.get(reverse("portal:group-detail", args=[remoteapp_group.pk])).content.decode()

    assert "Office desktop" in desktop_page and "member" in desktop_page
    assert "notepad.exe" in apps_page and "Nobody is assigned yet" in apps_page


def test_a_desktop_in_the_portal_offers_its_rdp_file_and_the_browser(staff, desktop_group):
    page = html.fromstring(staff.get(reverse("portal:group-detail", args=[desktop_group.pk])).content)
    links = {link.text_content().strip(): link.get("href") for link in page.xpath("//p[@class='desktop-links']/a")}
    assert links == {"Download .rdp": "/feed/rdp/dag-a/desktop.rdp", "Open in browser": "/web/dag-a/desktop/"}
