"""The generic edit view (portal/views/generic.py) behind every create and edit page: what it does on its own,
whichever model it is declared for. The pages' own rules are in test_pools_and_hosts and test_feed_objects."""
from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from lxml import html

from broker.models import HostPool
from feed.models import Desktop, RemoteApp, Workspace
from portal import forms
from portal import urls as portal_urls
from portal.access import portal_user_required
from portal.views.generic import ObjectEditView
from portal.views.responses import GonePage, Link

POOL = {"name": "pool-a", "friendly_name": "Pool A", "description": "", "pool_type": "pooled",
        "load_balancer": "breadth_first", "personal_assignment": "automatic", "max_session_limit": "5",
        "custom_rdp_properties": ""}
APP = {"name": "wordpad", "friendly_name": "WordPad", "description": "", "file_path": r"C:\wordpad.exe",
       "command_line_setting": "do_not_allow", "command_line_arguments": "", "file_extensions": "",
       "show_in_feed": "on"}


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_an_edit_page_opens_with_the_objects_values_its_title_and_the_way_back(staff, remoteapp_group):
    app = RemoteApp.objects.create(application_group=remoteapp_group, name="notepad", friendly_name="Notepad",
                                   file_path="notepad.exe")

    response = staff.get(reverse("portal:app-edit", args=[app.pk]))

    doc = html.fromstring(response.content)
    assert response.status_code == 200
    assert doc.xpath("//h1")[0].text_content() == "Edit RemoteApp notepad"
    assert doc.get_element_by_id("id_friendly_name").get("value") == "Notepad"
    assert doc.xpath("//a[text()='Cancel']")[0].get("href") == reverse("portal:group-detail",
                                                                         args=[remoteapp_group.pk])
    assert doc.xpath("//form[@method='post']")[-1].get("enctype") == "multipart/form-data"  # it takes an icon


def test_a_create_under_a_parent_fills_the_parent_in_and_says_so(staff, remoteapp_group):
    response = staff.post(reverse("portal:app-create", args=[remoteapp_group.pk]), APP, follow=True)

    app = RemoteApp.objects.get(name="wordpad")
    assert app.application_group == remoteapp_group
    assert response.redirect_chain == [(reverse("portal:group-detail", args=[remoteapp_group.pk]), 302)]
    assert shown_messages(response) == ["RemoteApp WordPad added to rag-a."]


def test_a_create_under_a_parent_deleted_meanwhile_answers_the_gone_page_when_opened_too(staff, remoteapp_group):
    pk = remoteapp_group.pk
    remoteapp_group.delete()

    response = staff.get(reverse("portal:app-create", args=[pk]))

    assert response.status_code == 404
    assert "This application group no longer exists" in response.content.decode()
    assert html.fromstring(response.content).xpath("//a[text()='Back to application groups']")[0].get("href") == \
        reverse("portal:groups")


def test_an_object_missing_from_its_parent_answers_the_gone_page_with_the_way_back_to_the_parent(staff,
                                                                                                desktop_group):
    Desktop.objects.filter(application_group=desktop_group).delete()

    for method in ("get", "post"):
        response = getattr(staff, method)(reverse("portal:desktop-edit", args=[desktop_group.pk]))
        assert response.status_code == 404, method
        doc = html.fromstring(response.content)
        assert "This group's desktop no longer exists" in doc.text_content()
        assert doc.xpath("//a[text()='Back to the application group']")[0].get("href") == \
            reverse("portal:group-detail", args=[desktop_group.pk])


def test_a_save_the_database_refuses_is_a_form_error_not_a_500(staff, monkeypatch, db):
    def refused(form, commit=True):
        raise IntegrityError("UNIQUE constraint failed: broker_hostpool.name")

    monkeypatch.setattr(forms.HostPoolForm, "save", refused)

    response = staff.post(reverse("portal:pool-create"), {**POOL, "friendly_name": "Typed"})

    assert response.status_code == 400
    assert "it conflicts with a change made meanwhile" in response.content.decode()
    assert html.fromstring(response.content).get_element_by_id("id_friendly_name").get("value") == "Typed"
    assert not HostPool.objects.exists()


def test_a_database_rule_that_speaks_in_sentences_is_shown_as_it_is(staff, workspace, monkeypatch):
    def refused(form, commit=True):
        raise IntegrityError("A workspace cannot be renamed while it is published")

    monkeypatch.setattr(forms.WorkspaceForm, "save", refused)

    response = staff.post(reverse("portal:workspace-edit", args=[workspace.pk]),
                          {"name": "contoso", "friendly_name": "New"})

    assert response.status_code == 400
    assert ("The database refused the change: A workspace cannot be renamed while it is published"
            in response.content.decode())
    assert Workspace.objects.get().friendly_name != "New"


def test_the_log_says_who_changed_which_fields(staff, pooled_pool, caplog):
    caplog.set_level(logging.INFO, logger="portal")

    staff.post(reverse("portal:pool-edit", args=[pooled_pool.pk]),
               {**POOL, "friendly_name": "Renamed", "max_session_limit": pooled_pool.max_session_limit})

    assert "admin changed host pool pool-a: friendly_name" in caplog.messages


def test_edit_pages_answer_get_head_and_post_only_and_to_staff_first(staff, plain, pooled_pool):
    url = reverse("portal:pool-edit", args=[pooled_pool.pk])

    assert [staff.generic(method, url).status_code for method in ("GET", "HEAD", "PUT", "DELETE")] == \
        [200, 200, 405, 405]
    assert plain.put(url).status_code == 403  # who is asking is checked before how
    assert staff.get(reverse("portal:assignment-create", args=[pooled_pool.pk])).status_code == 405  # POST only


def test_edit_pages_are_not_cached(staff, pooled_pool):
    response = staff.get(reverse("portal:pool-edit", args=[pooled_pool.pk]))

    assert "no-cache" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_the_staff_mark_of_a_class_based_route_comes_from_its_guarded_dispatch():
    """So test_access's check of every route stays meaningful for class-based views: a class that skips
    the guard carries no mark."""

    class Unguarded(View):
        pass

    @method_decorator(portal_user_required, name="dispatch")
    class Guarded(View):
        pass

    assert not hasattr(Unguarded.as_view(), "portal_guarded")
    assert Guarded.as_view().portal_guarded is True
    class_routes = [p for p in portal_urls.urlpatterns if hasattr(p.callback, "view_class")]
    assert len(class_routes) == 10
    assert all(issubclass(p.callback.view_class, ObjectEditView) for p in class_routes)
    assert all(p.callback.portal_guarded for p in class_routes)


def test_a_declaration_that_cannot_work_fails_when_it_is_made():
    with pytest.raises(ImproperlyConfigured, match="needs gone"):
        class NoGonePage(ObjectEditView):
            queryset = HostPool.objects.all()
            form_class = forms.HostPoolForm
            success_url = Link("portal:pools")

    with pytest.raises(ImproperlyConfigured, match="needs parent_field"):
        class NoParentField(ObjectEditView):
            parent_queryset = HostPool.objects.all()
            parent_gone = GonePage("This host pool", Link("portal:pools"), "Back to host pools")
            form_class = forms.HostPoolForm
            success_url = Link("portal:pools")
