"""Bad input gets a clear 4xx answer and a log line, never a traceback or unbounded memory."""
from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from rest_framework.test import APIRequestFactory

from core.api.exceptions import exception_handler
from feed.models import Workspace


def _post_raw(api, url: str, body: str | bytes):
    return api.generic("POST", url, body, content_type="application/json")


def test_a_json_body_over_the_limit_is_refused_with_413(admin_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = _post_raw(admin_api, "/api/v1/workspaces/", '{"name": "big", "description": "' + "x" * 2000 + '"}')
    assert response.status_code == 413
    assert not Workspace.objects.exists()


def test_a_body_within_the_limit_is_accepted(admin_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = _post_raw(admin_api, "/api/v1/workspaces/", '{"name": "small", "description": "' + "x" * 900 + '"}')
    assert response.status_code == 201


@pytest.mark.parametrize("body", [
    "{not json", '{"name": NaN}', b'{"name": "\xff\xfe"}', "[" * 100_000, "",
])
def test_malformed_json_is_a_400(admin_api, body):
    response = _post_raw(admin_api, "/api/v1/workspaces/", body)
    assert response.status_code == 400
    assert not Workspace.objects.exists()


@pytest.mark.parametrize("body", ["[]", "null", '"contoso"', "42"])
def test_json_that_is_not_an_object_is_a_400(admin_api, pooled_pool, body):
    assert _post_raw(admin_api, "/api/v1/workspaces/", body).status_code == 400
    assert _post_raw(admin_api, f"/api/v1/hostpools/{pooled_pool.pk}/registration-token/", body).status_code == 400


def test_a_wrong_type_for_a_field_is_a_field_error(admin_api):
    response = admin_api.post("/api/v1/hostpools/", {"name": "pool-b", "max_session_limit": "many",
                                                      "start_vm_on_connect": "perhaps"})
    assert response.status_code == 400
    assert set(response.json()) == {"max_session_limit", "start_vm_on_connect"}


def test_an_overlong_name_is_a_field_error(admin_api):
    response = admin_api.post("/api/v1/workspaces/", {"name": "a" * 64})
    assert response.status_code == 400
    assert "name" in response.json()


def test_refusals_are_logged_with_the_request(admin_api, caplog):
    with caplog.at_level(logging.INFO, logger="core.api.exceptions"):
        admin_api.post("/api/v1/workspaces/", {"name": "bad name"})
    assert any("POST /api/v1/workspaces/" in record.getMessage() for record in caplog.records)


# The exception handler itself, for errors the API's validation normally stops before they happen
# (a concurrent writer slipping past validation, or a database rule).

def _context() -> dict:
    return {"request": APIRequestFactory().post("/api/v1/workspaces/")}


def test_an_integrity_error_is_a_409():
    response = exception_handler(IntegrityError("UNIQUE constraint failed: feed_workspace.name"), _context())
    assert response.status_code == 409
    assert response.data["reason"] == "UNIQUE constraint failed: feed_workspace.name"


def test_a_django_validation_error_is_a_400_with_field_errors():
    response = exception_handler(ValidationError({"name": "Taken.", "__all__": "Broken."}), _context())
    assert response.status_code == 400
    assert response.data == {"name": ["Taken."], "non_field_errors": ["Broken."]}
