"""The OpenAPI schema is valid and describes every endpoint; the Swagger UI renders."""
from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from wvdportal.urls import router


@pytest.fixture
def schema(db) -> dict:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_a_valid_openapi_3_document(schema):
    assert schema["openapi"].startswith("3.")
    validate(schema)


def test_every_registered_endpoint_is_in_the_schema(schema):
    documented = {path.split("/")[3] for path in schema["paths"] if path.startswith("/api/v1/")}
    assert documented >= {prefix for prefix, _, _ in router.registry}


def test_every_operation_describes_its_success_and_error_answers(schema):
    registered = {prefix for prefix, _, _ in router.registry}
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/") or path.split("/")[3] not in registered:
            continue  # Endpoints mounted outside the router (agent registration, feed) have their own rules.
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert codes & {"200", "201", "204"}, f"{method.upper()} {path} has no success answer"
            assert "401" in codes, f"{method.upper()} {path} does not say it needs authentication"
            if "{id}" in path:
                assert "404" in codes, f"{method.upper()} {path} does not mention 404"
            if method in {"post", "put", "patch"}:
                assert "requestBody" in operation, f"{method.upper()} {path} has no request body"
                assert "400" in codes, f"{method.upper()} {path} does not mention 400"


def _operation(schema: dict, path: str, method: str) -> dict:
    return schema["paths"][path][method]


def _response_schema(schema: dict, operation: dict, code: str) -> dict:
    ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_the_actions_describe_their_own_request_and_answer(schema):
    issue = _operation(schema, "/api/v1/hostpools/{id}/registration-token/", "post")
    assert set(_response_schema(schema, issue, "201")["properties"]) == {"token", "expires_at"}
    revoke = _operation(schema, "/api/v1/hostpools/{id}/registration-token/", "delete")
    assert "204" in revoke["responses"]

    drain = _operation(schema, "/api/v1/sessionhosts/{id}/drain/", "post")
    request_ref = drain["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    drain_request = schema["components"]["schemas"][request_ref.rsplit("/", 1)[1]]
    assert drain_request["properties"]["allow_new_sessions"]["type"] == "boolean"
    assert drain_request["required"] == ["allow_new_sessions"]
    assert "allow_new_sessions" in _response_schema(schema, drain, "200")["properties"]

    replacement = _operation(schema, "/api/v1/sessionhosts/{id}/replacement/", "post")
    request_ref = replacement["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    replacement_request = schema["components"]["schemas"][request_ref.rsplit("/", 1)[1]]
    assert replacement_request["properties"]["marked_for_replacement"]["type"] == "boolean"
    assert replacement_request["required"] == ["marked_for_replacement"]
    assert "marked_for_replacement_at" in _response_schema(schema, replacement, "200")["properties"]
    assert "host_in_use" in replacement["description"]


def test_token_creation_documents_the_token_text_in_its_answer_only(schema):
    create = _operation(schema, "/api/v1/tokens/", "post")
    assert "token" in _response_schema(schema, create, "201")["properties"]
    listed = _operation(schema, "/api/v1/tokens/{id}/", "get")
    assert "token" not in _response_schema(schema, listed, "200")["properties"]


def test_desktops_document_that_they_are_not_created_or_deleted_here(schema):
    assert set(schema["paths"]["/api/v1/desktops/"]) == {"get"}
    assert "delete" not in schema["paths"]["/api/v1/desktops/{id}/"]
    description = schema["paths"]["/api/v1/desktops/"]["get"]["description"]
    assert "created with its desktop application group" in description


def test_the_host_pool_schema_never_mentions_the_token_hash(schema):
    assert "registration_token_hash" not in str(schema["components"]["schemas"]["HostPool"])


def test_the_docs_page_renders_with_its_start_up_script_from_a_url_not_inline(db):
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert '<script src="/api/docs/?script="></script>' in page
    script = APIClient().get("/api/docs/?script=")
    assert script.status_code == 200 and "/api/schema/" in script.content.decode()


def test_the_docs_page_alone_allows_its_inline_style_and_data_images(db):
    docs = APIClient().get("/api/docs/")["Content-Security-Policy"]
    portal = APIClient().get("/accounts/login/")["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in docs and "img-src 'self' data:" in docs
    assert "script-src 'self';" in docs + ";" and "unsafe-inline" not in portal


def test_the_docs_page_static_files_are_served(db):
    page = APIClient().get("/api/docs/").content.decode()
    bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert bundle in page
    response = APIClient().get(bundle)
    assert response.status_code == 200
