"""Pickers name only what their user may see (docs/roles.md, "Pickers"): the choices of the portal's forms, the
admin's add and change pages and sidebar filters, and the API's browsable forms and filter forms. A scoped user
is offered exactly side 1's objects they may pick and never sees a side-2 name; naming a side-2 object anyway
is the field's error and leaves nothing changed and nothing in the audit log; a superuser is offered everything;
and once the role is taken away the form is refused altogether."""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from broker.models import HostPool, SessionHost
from feed.models import ApplicationGroup, RemoteApp
from tests.roles.conftest import AuditWatch
from tests.roles.test_admin_matrix import admin_url

# Side 2's objects get names that appear nowhere else, so "never in the page" can be read off the HTML.
SECRET = "zz-secret"


@pytest.fixture
def estate(estate):
    for name in ("ws2", "p2", "ag2", "rag2", "h2"):
        obj = estate[name]
        obj.name = f"{SECRET}-{name}" if name != "h2" else f"{SECRET}-h2.example.net"
        obj.save(update_fields=["name"])
    return estate


def options(html: str, name: str) -> set[str]:
    """The labels of the <select name=...>'s options, the empty one left out."""
    select = re.search(rf'<select[^>]*\bname="{name}"[^>]*>(.*?)</select>', html, re.DOTALL)
    assert select is not None, f"no <select name={name!r}> in the page"
    labels = re.findall(r'<option value="([^"]+)"[^>]*>\s*(.*?)\s*</option>', select.group(1), re.DOTALL)
    return {label for value, label in labels if value}


def signed_in(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def delegate(django_user_model, estate):
    estate.delegate = django_user_model.objects.create_user("delegate", is_staff=True)
    return estate.delegate


@pytest.fixture
def superuser(django_user_model, estate):
    return django_user_model.objects.create_superuser("root", password="x")


GROUP_FORM = {"name": "new-group", "friendly_name": "", "description": "", "group_type": "remoteapp"}


# --- the portal ---------------------------------------------------------------------------------------------


def test_the_portal_group_form_offers_a_scoped_contributor_only_their_pool_and_workspace(estate, delegate, give_role):
    give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = signed_in(delegate)
    for url in (reverse("portal:group-create"), reverse("portal:group-edit", args=[estate["rag1"].pk])):
        html = browser.get(url).content.decode()
        assert options(html, "host_pool") == {"p1"}, url
        assert options(html, "workspace") == {"ws1"}, url
        assert SECRET not in html, url


def test_the_portal_refuses_a_pool_the_user_may_not_pick_and_records_nothing(estate, delegate, give_role):
    give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = signed_in(delegate)
    watch = AuditWatch()
    response = browser.post(reverse("portal:group-create"),
                            GROUP_FORM | {"host_pool": estate["p2"].pk, "workspace": estate["ws1"].pk})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert SECRET not in response.content.decode()
    assert not ApplicationGroup.objects.filter(name="new-group").exists()
    response = browser.post(reverse("portal:group-edit", args=[estate["rag1"].pk]),
                            {"name": "rag1", "friendly_name": "", "description": "", "host_pool": estate["p2"].pk,
                             "workspace": estate["ws1"].pk})
    assert response.status_code == 400
    estate["rag1"].refresh_from_db()
    assert estate["rag1"].host_pool == estate["p1"]
    assert watch.mistakes("refused picks", granted=False) == []


def test_an_edit_form_keeps_offering_the_current_value_the_user_may_not_read_otherwise(estate, delegate, give_role):
    # An Application Group Contributor of one group reads no pool or workspace: the group's own are still its
    # choices (its page names them), and saving the group unchanged works.
    give_role(delegate, "Application Group Contributor", estate["ag1"])
    browser = signed_in(delegate)
    url = reverse("portal:group-edit", args=[estate["ag1"].pk])
    html = browser.get(url).content.decode()
    assert options(html, "host_pool") == {"p1"} and options(html, "workspace") == {"ws1"}
    assert SECRET not in html
    response = browser.post(url, {"name": "ag1", "friendly_name": "Kept", "description": "",
                                  "host_pool": estate["p1"].pk, "workspace": estate["ws1"].pk})
    assert response.status_code == 302
    estate["ag1"].refresh_from_db()
    assert estate["ag1"].friendly_name == "Kept"


def test_the_pool_a_role_is_given_at_is_offered_even_before_it_holds_a_group(estate, delegate, give_role):
    empty = HostPool.objects.create(name="empty-pool", max_session_limit=5)
    give_role(delegate, "Application Group Contributor", empty)
    browser = signed_in(delegate)
    html = browser.get(reverse("portal:group-create")).content.decode()
    assert options(html, "host_pool") == {"empty-pool"}
    assert options(html, "workspace") == set()
    response = browser.post(reverse("portal:group-create"), GROUP_FORM | {"host_pool": empty.pk, "workspace": ""})
    assert response.status_code == 302
    assert ApplicationGroup.objects.get(name="new-group").host_pool == empty


def test_a_superuser_is_offered_every_pool_and_workspace_in_the_portal(estate, superuser):
    html = signed_in(superuser).get(reverse("portal:group-create")).content.decode()
    assert options(html, "host_pool") == {"p1", f"{SECRET}-p2"}
    assert options(html, "workspace") == {"ws1", f"{SECRET}-ws2"}


def test_the_portal_form_is_refused_once_the_role_is_taken_away(estate, delegate, give_role):
    role = give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = signed_in(delegate)
    assert browser.get(reverse("portal:group-create")).status_code == 200
    role.delete()
    watch = AuditWatch()
    assert browser.get(reverse("portal:group-create")).status_code == 403
    response = browser.post(reverse("portal:group-create"),
                            GROUP_FORM | {"host_pool": estate["p1"].pk, "workspace": estate["ws1"].pk})
    assert response.status_code == 403
    assert not ApplicationGroup.objects.filter(name="new-group").exists()
    assert watch.mistakes("after the role was taken away", granted=False) == []


# --- the admin ----------------------------------------------------------------------------------------------


def test_the_admin_add_and_change_pages_offer_only_what_the_user_may_pick(estate, delegate, give_role):
    give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = signed_in(delegate)
    # The pool and workspace pickers search the host pool and workspace admins, which this user may not read:
    # here they are plain lists of what the user may pick.
    for url in (admin_url(ApplicationGroup, "add"), admin_url(ApplicationGroup, "change", estate["rag1"].pk)):
        html = browser.get(url).content.decode()
        assert options(html, "host_pool") == {"p1"}, url
        assert options(html, "workspace") == {"ws1"}, url
        assert SECRET not in html, url
    html = browser.get(admin_url(RemoteApp, "add")).content.decode()
    assert options(html, "application_group") == {"rag1"}
    assert SECRET not in html


def test_the_admin_sidebar_filters_name_only_what_the_user_may_pick(estate, delegate, give_role):
    # Django shows a filter only when it has two choices or more: a reader of two pools.
    third = HostPool.objects.create(name="p3", max_session_limit=5)
    SessionHost.objects.create(host_pool=third, name="h3.example.net")
    give_role(delegate, "Host Pool Reader", estate["p1"])
    give_role(delegate, "Host Pool Reader", third)
    html = signed_in(delegate).get(admin_url(SessionHost, "changelist")).content.decode()
    assert f"host_pool__id__exact={estate['p1'].pk}" in html
    assert f"host_pool__id__exact={third.pk}" in html
    assert f"host_pool__id__exact={estate['p2'].pk}" not in html
    assert SECRET not in html


def test_a_superuser_is_offered_everything_in_the_admin(estate, superuser):
    browser = signed_in(superuser)
    html = browser.get(admin_url(RemoteApp, "add")).content.decode()
    assert options(html, "application_group") == {"rag1", f"{SECRET}-rag2"}
    html = browser.get(admin_url(SessionHost, "changelist")).content.decode()
    assert f"host_pool__id__exact={estate['p2'].pk}" in html


ADMIN_GROUP_FORM = {"name": "rag1", "friendly_name": "", "description": "",
                    "remote_apps-TOTAL_FORMS": 0, "remote_apps-INITIAL_FORMS": 0,
                    "assignments-TOTAL_FORMS": 0, "assignments-INITIAL_FORMS": 0}


def test_the_admin_refuses_a_pool_the_user_may_not_pick_and_records_nothing(estate, delegate, give_role):
    give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = signed_in(delegate)
    group = estate["rag1"]
    url = admin_url(ApplicationGroup, "change", group.pk)
    watch = AuditWatch()
    response = browser.post(url, ADMIN_GROUP_FORM | {"host_pool": estate["p2"].pk, "workspace": estate["ws1"].pk})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert SECRET not in response.content.decode()
    group.refresh_from_db()
    assert group.host_pool == estate["p1"]
    assert watch.mistakes("moving a group to another pool", granted=False) == []


def test_the_admin_form_is_refused_once_the_role_is_taken_away(estate, delegate, give_role):
    role = give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = signed_in(delegate)
    url = admin_url(ApplicationGroup, "change", estate["rag1"].pk)
    assert browser.get(url).status_code == 200
    role.delete()
    watch = AuditWatch()
    assert browser.get(url).status_code == 403
    assert browser.post(url, ADMIN_GROUP_FORM | {"friendly_name": "Changed", "host_pool": estate["p1"].pk,
                                                 "workspace": estate["ws1"].pk}).status_code == 403
    assert browser.get(admin_url(ApplicationGroup, "add")).status_code == 403
    estate["rag1"].refresh_from_db()
    assert estate["rag1"].friendly_name == ""
    assert watch.mistakes("after the role was taken away", granted=False) == []


# --- the REST API -------------------------------------------------------------------------------------------


def browsable(user) -> Client:
    browser = signed_in(user)
    browser.defaults["HTTP_ACCEPT"] = "text/html"
    return browser


def test_the_browsable_api_form_offers_only_what_the_user_may_pick(estate, delegate, give_role):
    give_role(delegate, "Application Group Contributor", estate["ws1"])
    response = browsable(delegate).get("/api/v1/applicationgroups/")
    assert response.status_code == 200
    html = response.content.decode()
    assert options(html, "host_pool") == {"p1"}
    assert options(html, "workspace") == {"ws1"}
    assert SECRET not in html
    described = APIClient()
    described.force_authenticate(delegate)
    options_answer = described.options("/api/v1/applicationgroups/")
    assert options_answer.status_code == 200
    assert SECRET not in options_answer.content.decode()


def test_the_browsable_api_filter_form_offers_only_what_the_user_may_pick(estate, delegate, give_role):
    give_role(delegate, "Host Pool Reader", estate["p1"])
    browser = browsable(delegate)
    html = browser.get("/api/v1/sessionhosts/").content.decode()
    assert options(html, "host_pool") == {"p1"}
    assert SECRET not in html
    api = APIClient()
    api.force_authenticate(delegate)
    listed = api.get(f"/api/v1/sessionhosts/?host_pool={estate['p1'].pk}")
    assert [row["name"] for row in listed.json()["results"]] == ["h1.example.net"]
    # Another pool is the filter's 400, as a pool that does not exist is: the answer tells nothing.
    foreign = api.get(f"/api/v1/sessionhosts/?host_pool={estate['p2'].pk}")
    missing = api.get("/api/v1/sessionhosts/?host_pool=999999")
    assert foreign.status_code == missing.status_code == 400
    assert "host_pool" in foreign.json()


def test_the_api_refuses_a_pool_the_user_may_not_pick_as_it_refuses_one_that_does_not_exist(
        estate, delegate, give_role):
    give_role(delegate, "Application Group Contributor", estate["ws1"])
    api = APIClient()
    api.force_authenticate(delegate)
    watch = AuditWatch()
    body = {"name": "new-group", "group_type": "remoteapp", "workspace": estate["ws1"].pk}
    foreign = api.post("/api/v1/applicationgroups/", body | {"host_pool": estate["p2"].pk}, format="json")
    missing = api.post("/api/v1/applicationgroups/", body | {"host_pool": 999999}, format="json")
    assert foreign.status_code == missing.status_code == 400
    assert foreign.json()["host_pool"] == [f'Invalid pk "{estate["p2"].pk}" - object does not exist.']
    moved = api.patch(f"/api/v1/sessionhosts/{estate['h1'].pk}/", {"host_pool": estate["p2"].pk}, format="json")
    assert moved.status_code in (400, 403)  # no role over session hosts here: refused before the field
    assert not ApplicationGroup.objects.filter(name="new-group").exists()
    assert watch.mistakes("refused picks", granted=False) == []


def test_a_pickable_choice_that_lands_outside_the_scope_is_still_refused_at_save(estate, delegate, give_role):
    # The group's contributor may name its pool and workspace, but a new group there lies outside their scope
    # (one group): the save-time rule answers, 403.
    give_role(delegate, "Application Group Contributor", estate["ag1"])
    api = APIClient()
    api.force_authenticate(delegate)
    watch = AuditWatch()
    response = api.post("/api/v1/applicationgroups/", {
        "name": "new-group", "group_type": "remoteapp", "host_pool": estate["p1"].pk,
        "workspace": estate["ws1"].pk}, format="json")
    assert response.status_code == 403
    assert not ApplicationGroup.objects.filter(name="new-group").exists()
    assert watch.mistakes("a new group outside the scope", granted=False) == []


def test_a_superuser_is_offered_everything_in_the_browsable_api(estate, superuser):
    browser = browsable(superuser)
    html = browser.get("/api/v1/applicationgroups/").content.decode()
    assert options(html, "host_pool") == {"p1", f"{SECRET}-p2"}
    html = browser.get("/api/v1/sessionhosts/").content.decode()
    assert options(html, "host_pool") == {"p1", f"{SECRET}-p2"}


def test_the_browsable_api_is_refused_once_the_role_is_taken_away(estate, delegate, give_role):
    role = give_role(delegate, "Application Group Contributor", estate["ws1"])
    browser = browsable(delegate)
    assert browser.get("/api/v1/applicationgroups/").status_code == 200
    role.delete()
    response = browser.get("/api/v1/applicationgroups/")
    assert response.status_code == 403
    html = response.content.decode()
    assert 'name="host_pool"' not in html and SECRET not in html
