"""GET /api/v1/feed/: the caller's desktops and RemoteApps as JSON, documented in the OpenAPI schema."""
from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from feed.models import RemoteApp
from tests.feed.conftest import make_many_resources

URL = "/api/v1/feed/"


def test_it_lists_the_members_desktop_and_group_assigned_remoteapp(member_api, desktop_group, apps_through_group):
    response = member_api.get(URL)

    assert response.status_code == 200
    desktop, app = response.json()
    assert desktop == {
        "id": "dag-a/desktop", "type": "Desktop", "title": "Office desktop", "description": "",
        "workspace": {"name": "contoso", "title": "Contoso Workspace", "description": ""},
        "application_group": "dag-a", "file_extensions": [],
        "icon_url": desktop["icon_url"], "icon_png32_url": desktop["icon_png32_url"],
        "rdp_url": "http://testserver/feed/rdp/dag-a/desktop.rdp",
    }
    assert desktop["icon_url"].startswith("http://testserver/feed/icon/dag-a/desktop.ico?v=")
    assert desktop["icon_png32_url"].startswith("http://testserver/feed/icon/dag-a/desktop_32x32.png?v=")
    assert (app["id"], app["type"], app["file_extensions"]) == ("rag-a/notepad", "RemoteApp", [".txt", ".log"])


def test_an_outsider_gets_an_empty_list(outsider_api, desktop_group, apps_through_group):
    response = outsider_api.get(URL)

    assert (response.status_code, response.json()) == (200, [])


def test_hidden_remoteapps_are_not_listed(member_api, apps_through_group):
    RemoteApp.objects.filter(pk=apps_through_group.pk).update(show_in_feed=False)

    assert member_api.get(URL).json() == []


def test_anonymous_callers_get_401_with_a_bearer_challenge(anonymous_api):
    response = anonymous_api.get(URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_browser_session_is_accepted(member, desktop_group):
    client = APIClient()
    client.force_login(member)

    assert [item["id"] for item in client.get(URL).json()] == ["dag-a/desktop"]


@pytest.mark.parametrize("count", [1, 8])
def test_the_feed_takes_a_fixed_number_of_queries(member, member_api, staff_group, django_assert_num_queries,
                                                  count):
    make_many_resources(member, count)
    member_api.get(URL)  # the token's last-used time is written on first use only

    # The token lookup, then desktops and RemoteApps: no query per resource.
    with django_assert_num_queries(3):
        response = member_api.get(URL)

    assert len(response.json()) == 2 * count


@pytest.fixture
def schema(db) -> dict:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_documents_the_feed_and_the_sign_in(schema):
    validate(schema)
    feed = schema["paths"]["/api/v1/feed/"]["get"]
    item_ref = feed["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"]
    item = schema["components"]["schemas"][item_ref.rsplit("/", 1)[1]]
    assert {"id", "type", "title", "workspace", "icon_url", "icon_png32_url", "rdp_url"} <= set(item["properties"])
    assert "401" in feed["responses"]
    sign_in = schema["paths"]["/api/v1/auth/token/"]["post"]
    assert {"201", "400", "401", "429"} <= set(sign_in["responses"])
    assert "requestBody" in sign_in


def test_the_file_endpoints_stay_out_of_the_api_schema(schema):
    assert not [path for path in schema["paths"] if "webfeed" in path or path.startswith("/feed/")]
