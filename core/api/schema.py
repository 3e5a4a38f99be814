"""OpenAPI descriptions drf-spectacular cannot infer: the token authentication, and the error answers."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from core.permissions import HasRole

WRITE_METHODS = {"POST", "PUT", "PATCH"}
MODEL_WRITE_ACTIONS = {"create", "update", "partial_update", "destroy"}
# Field name (or non_field_errors) -> messages; nested objects would nest the same way.
VALIDATION_ERRORS = {
    "type": "object",
    "description": "Errors by field; errors about the object as a whole are under non_field_errors.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from /api/v1/tokens/ or a sign-in token from POST /api/v1/auth/token/, "
            "sent as `Authorization: Bearer <token>` "
            "(`Authorization: Token <token>` is accepted too).",
        }


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    in_use_by = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Up to ten objects that still use this one."
    )
    reason = serializers.CharField(required=False, help_text="The database's refusal, when a rule there caught it.")


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's schema plus the error answers our endpoints give (401, 403, 404, 400, 409, 413)."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, answer in self._error_responses().items():
            responses.setdefault(code, self._get_response_for_code(answer, code, direction=direction))
        return dict(sorted(responses.items()))

    def get_tags(self) -> list[str]:
        # One tag per resource (/api/v1/hostpools/... -> hostpools), so the docs group operations by it.
        parts = [part for part in self.path.split("/") if part]
        return [parts[2]] if len(parts) > 2 and parts[:2] == ["api", "v1"] else super().get_tags()

    def _error_responses(self) -> dict[str, OpenApiResponse]:
        action = getattr(self.view, "action", None)
        errors = {"401": OpenApiResponse(ErrorSerializer, "Not signed in, or an invalid, expired or revoked token.")}
        if any(isinstance(p, HasRole) for p in self.view.get_permissions()):
            errors["403"] = OpenApiResponse(ErrorSerializer, "None of your roles grants this action on this object.")
        if "{" in self.path:
            errors["404"] = OpenApiResponse(ErrorSerializer, "No such object (or not yours).")
        if self.method in WRITE_METHODS:
            errors["400"] = OpenApiResponse(VALIDATION_ERRORS, "Invalid data: the errors name the fields to fix.")
            errors["413"] = OpenApiResponse(ErrorSerializer, "The request body is too large.")
        if action in MODEL_WRITE_ACTIONS and getattr(self.view, "may_conflict", False):
            description = ("Still in use by other objects." if self.method == "DELETE"
                           else "Conflicts with a concurrent change or a database rule.")
            errors["409"] = OpenApiResponse(ConflictSerializer, description)
        return errors

