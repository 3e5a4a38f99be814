"""Every model of wvdportal, broker and feed has an admin whose pages render, filter, search and sort,
and the system's own records are read-only."""
from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.core.checks import run_checks
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from broker.models import Connection, GatewayInstance, HostPool, SessionHost, SessionHostStatusChange, UserSession
from core.models import (
    ApiToken,
    AuditEvent,
    Certificate,
    DirectoryAccount,
    OidcAccount,
    OidcGroup,
    RevokedTicket,
    RoleAssignment,
    UserAccessChange,
)
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace

pytestmark = pytest.mark.django_db

MODELS = [
    Workspace, HostPool, ApplicationGroup, Assignment, Desktop, RemoteApp, SessionHost, SessionHostStatusChange,
    UserSession, GatewayInstance, Connection, Certificate, ApiToken, RevokedTicket, UserAccessChange,
    DirectoryAccount, RoleAssignment, AuditEvent, OidcAccount, OidcGroup,
]
READ_ONLY = [Connection, UserSession, SessionHostStatusChange, GatewayInstance, Certificate, RevokedTicket,
             UserAccessChange, AuditEvent]
# Created by the system, not by hand: hosts join with a registration token, a Desktop comes with its group, a
# directory account with the user's first directory sign-in, an OIDC account with the first OIDC sign-in.
NO_ADD = [*READ_ONLY, SessionHost, Desktop, DirectoryAccount, OidcAccount]
ADDABLE = [model for model in MODELS if model not in NO_ADD]


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def ids(model) -> str:
    return model.__name__


def test_every_model_has_an_admin_and_is_tested_here():
    ours = {model for label in ("wvdportal", "broker", "feed") for model in apps.get_app_config(label).get_models()}
    assert ours == set(MODELS)
    assert all(admin.site.is_registered(model) for model in ours)


def test_the_admin_configuration_passes_the_system_checks():
    assert run_checks(tags=["admin"]) == []


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_the_changelist_renders_and_lists_the_object(model, admin_browser, estate):
    response = admin_browser.get(url(model, "changelist"))
    assert response.status_code == 200
    assert estate[model] in response.context["cl"].result_list


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_the_change_page_renders(model, admin_browser, estate):
    response = admin_browser.get(url(model, "change", estate[model].pk))
    assert response.status_code == 200
    assert response.context["original"] == estate[model]


@pytest.mark.parametrize("model", ADDABLE, ids=ids)
def test_the_add_page_renders(model, admin_browser, estate):
    assert admin_browser.get(url(model, "add")).status_code == 200


# A word from each estate object that its admin's search box finds.
SEARCH_TERMS = {
    Workspace: lambda obj: "CONTOSO",
    HostPool: lambda obj: "Pool A",
    ApplicationGroup: lambda obj: "office apps",
    Assignment: lambda obj: "finance",
    Desktop: lambda obj: "dag-a",
    RemoteApp: lambda obj: "notepad.exe",
    SessionHost: lambda obj: "SH-01",
    SessionHostStatusChange: lambda obj: "first heartbeat",
    UserSession: lambda obj: "member",
    GatewayInstance: lambda obj: "gw.example",
    Connection: lambda obj: str(obj.activity_id)[:13],
    Certificate: lambda obj: "sh-01",
    ApiToken: lambda obj: obj.prefix,
    RevokedTicket: lambda obj: obj.jti,
    UserAccessChange: lambda obj: "signed out",
    DirectoryAccount: lambda obj: "ou=people",
    RoleAssignment: lambda obj: "Host Pool Reader",
    AuditEvent: lambda obj: obj.object_repr,
    OidcAccount: lambda obj: "subject-7",
    OidcGroup: lambda obj: "Sales",
}


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_the_search_box_finds_the_object(model, admin_browser, estate):
    changelist = url(model, "changelist")
    found = admin_browser.get(changelist, {"q": SEARCH_TERMS[model](estate[model])}).context["cl"].result_list
    assert estate[model] in found
    missed = admin_browser.get(changelist, {"q": "no-such-thing-anywhere"}).context["cl"].result_list
    assert estate[model] not in missed


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_every_list_filter_choice_renders(model, admin_browser, estate):
    changelist = url(model, "changelist")
    cl = admin_browser.get(changelist).context["cl"]
    assert cl.has_filters
    for spec in cl.filter_specs:
        for choice in spec.choices(cl):
            assert admin_browser.get(changelist + choice["query_string"]).status_code == 200, choice


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_every_column_sorts(model, admin_browser, estate):
    changelist = url(model, "changelist")
    columns = len(admin_browser.get(changelist).context["cl"].list_display)
    for column in range(1, columns):
        for direction in ("", "-"):
            response = admin_browser.get(changelist, {"o": f"{direction}{column}"})
            assert response.status_code == 200, (column, direction)


@pytest.mark.parametrize("model", READ_ONLY, ids=ids)
class TestReadOnlyModels:
    def test_it_refuses_the_add_page(self, model, admin_browser, estate):
        assert admin_browser.get(url(model, "add")).status_code == 403
        assert admin_browser.post(url(model, "add"), {}).status_code == 403

    def test_it_shows_the_object_without_a_save_button(self, model, admin_browser, estate):
        response = admin_browser.get(url(model, "change", estate[model].pk))
        assert response.status_code == 200
        assert 'name="_save"' not in response.content.decode()

    def test_it_refuses_changes_and_deletion(self, model, admin_browser, estate):
        obj = estate[model]
        assert admin_browser.post(url(model, "change", obj.pk), {}).status_code == 403
        assert admin_browser.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
        assert model.objects.filter(pk=obj.pk).exists()

    def test_it_offers_no_bulk_delete(self, model, admin_browser, estate):
        response = admin_browser.get(url(model, "changelist"))
        assert "delete_selected" not in response.content.decode()


@pytest.mark.parametrize("model", [SessionHost, Desktop, DirectoryAccount, OidcAccount], ids=ids)
def test_objects_the_system_creates_cannot_be_added_by_hand(model, admin_browser, estate):
    assert admin_browser.get(url(model, "add")).status_code == 403


def _more_rows(estate: dict, count: int) -> None:
    pool, group = estate[HostPool], estate[ApplicationGroup]
    for n in range(count):
        host = SessionHost.objects.create(name=f"extra-{n}", host_pool=pool)
        host.set_status("available", "heartbeat")
        Connection.objects.create(username=f"user{n}", session_host=host, host_pool=pool,
                                  gateway_instance=estate[GatewayInstance])
        extra = ApplicationGroup.objects.create(name=f"extra-group-{n}", group_type="desktop", host_pool=pool)
        Assignment.objects.create(application_group=extra, user=estate[ApiToken].user)
        RemoteApp.objects.create(application_group=group, name=f"app{n}", friendly_name=f"App {n}", file_path="a.exe")


@pytest.mark.parametrize(
    "model",
    [HostPool, SessionHost, SessionHostStatusChange, Connection, ApplicationGroup, Assignment, Desktop, RemoteApp],
    ids=ids,
)
def test_the_changelist_makes_as_many_queries_for_many_rows_as_for_few(model, admin_browser, estate):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_browser.get(url(model, "changelist")).status_code == 200
        return len(captured)

    few = queries()
    _more_rows(estate, 5)
    assert queries() == few
