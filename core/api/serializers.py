"""The API's base serializer, which runs the model layer's validation, and the core app's serializers.

Every write goes through ``ModelCleanSerializer``: it builds the instance the write would produce and
calls the model's own ``full_clean()``, so ``clean()`` rules and the database constraints (the
case-insensitive unique names, conditional unique constraints, check constraints) answer 400 with
field errors before any SQL runs. DRF's own uniqueness validators are switched off: they would check
the same constraints a second time, less faithfully (they know nothing of ``Lower("name")``).
"""
from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models, router
from django.db.models import F, UniqueConstraint
from rest_framework import exceptions, serializers
from rest_framework.settings import api_settings
from rest_framework.validators import UniqueValidator

from core.authorization import ADD, CHANGE, action_for, grants_for_request
from core.models import ApiToken, Certificate, RoleAssignment
from core.roles import ScopeType


def model_validation_errors(
    instance: models.Model, constraint_fields: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Run ``full_clean()`` on ``instance``; return its errors keyed by field (``non_field_errors`` else).

    Django reports a violated expression-based unique constraint (``Lower("name")``) as a non-field
    error; an API client needs to know which field to fix, so each unique constraint's error goes to
    the last field it names (by our convention the name, after the parent it is unique within).
    ``constraint_fields`` overrides that guess per constraint name.
    """
    # Deferred fields (icons) are never written through the API: do not load them just to check them.
    exclude = set(instance.get_deferred_fields())
    errors: dict[str, list[str]] = {}
    try:
        instance.full_clean(exclude=exclude, validate_constraints=False)
    except DjangoValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    # Like full_clean(): constraints only over fields that passed their own validation.
    exclude |= set(errors) - {NON_FIELD_ERRORS}
    using = router.db_for_write(type(instance), instance=instance)
    for model_class, constraints in instance.get_constraints():
        for constraint in constraints:
            try:
                constraint.validate(model_class, instance, exclude=exclude, using=using)
            except DjangoValidationError as exc:
                field = (constraint_fields or {}).get(constraint.name) or _field_of(constraint)
                errors.setdefault(field, []).extend(exc.messages)
    return {
        (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
        for field, messages in errors.items()
    }


def _field_of(constraint: models.BaseConstraint) -> str:
    """The field a violated constraint's error belongs to (see ``model_validation_errors``)."""
    if not isinstance(constraint, UniqueConstraint):
        return NON_FIELD_ERRORS
    names = list(constraint.fields)
    for expression in constraint.expressions:
        names.extend(_field_names(expression))
    return names[-1] if names else NON_FIELD_ERRORS


def _field_names(expression) -> list[str]:
    """The fields an expression reads, in order: ``Lower("name")`` -> ``["name"]``."""
    if isinstance(expression, F):
        return [expression.name]
    return [name for source in expression.get_source_expressions() for name in _field_names(source)]


class ModelCleanSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose every create and update passes the model's ``full_clean()`` first."""

    # Constraint name -> field its error is reported on, where the last named field is the wrong one.
    constraint_error_fields: dict[str, str] = {}

    def get_validators(self) -> list:
        return []  # full_clean() checks every constraint, conditions and expressions included.

    def get_uniqueness_extra_kwargs(self, field_names, declared_fields, extra_kwargs):
        # DRF would make the fields of a unique constraint required for its own check, which is switched off.
        return extra_kwargs, {}

    def build_standard_field(self, field_name, model_field):
        field_class, field_kwargs = super().build_standard_field(field_name, model_field)
        validators = field_kwargs.get("validators")
        if validators:
            field_kwargs["validators"] = [v for v in validators if not isinstance(v, UniqueValidator)]
        return field_class, field_kwargs

    def get_fields(self) -> dict[str, serializers.Field]:
        """Its object fields offer and take only what the caller may pick (``Grants.choices``): the browsable
        API's form lists nothing else, and another id is a 400 "object does not exist", as for an id that
        does not exist (core/pickers.py)."""
        fields = super().get_fields()
        request = self.context.get("request")
        if request is None:
            return fields
        grants = grants_for_request(request)
        for name, field in fields.items():
            relation = field.child_relation if isinstance(field, serializers.ManyRelatedField) else field
            if isinstance(relation, serializers.RelatedField) and relation.queryset is not None:
                path = (field.source or name).replace(".", "__")  # not bound yet: source may be unset
                relation.queryset = grants.choices(relation.queryset, self.Meta.model, path)
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        instance = self.build_instance(attrs)
        self.authorize(instance)
        errors = model_validation_errors(instance, self.constraint_error_fields)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def authorize(self, instance: models.Model) -> None:
        """The object as the write would leave it must lie where the caller's roles allow adding (or changing)
        it: otherwise a scoped contributor could create an object outside their scope, or move one out."""
        request = self.context.get("request")
        if request is None:
            return  # Not an API request: the caller decided (the API always passes its request).
        action = action_for(type(instance), ADD if self.instance is None else CHANGE)
        if not grants_for_request(request).allows(action, instance):
            raise exceptions.PermissionDenied("None of your roles grants this action where this object would be.")

    def build_instance(self, attrs: dict[str, Any]) -> models.Model:
        """The object this write would save: a new one, or a copy of the current one with ``attrs`` applied."""
        if self.instance is None:
            return self.Meta.model(**attrs)
        instance = copy.copy(self.instance)  # A copy: a refused update must leave the original untouched.
        for name, value in attrs.items():
            setattr(instance, name, value)
        return instance


class StrictBooleanField(serializers.BooleanField):
    """A JSON ``true`` or ``false`` only: ``"no"``, ``0`` or ``"false"`` are refused, not guessed at."""

    default_error_messages = {"invalid": "Must be a JSON boolean, true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid")


class CertificateSerializer(serializers.ModelSerializer):
    is_valid_now = serializers.BooleanField(read_only=True, help_text="Not revoked and within its validity.")

    class Meta:
        model = Certificate
        fields = [
            "id", "serial_number", "subject", "common_name", "purpose", "fingerprint_sha256",
            "not_before", "not_after", "issued_at", "revoked_at", "revocation_reason", "renewed_by",
            "is_valid_now", "pem",
        ]
        read_only_fields = fields


class ApiTokenSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    is_usable = serializers.BooleanField(read_only=True, help_text="Neither revoked nor expired.")

    class Meta:
        model = ApiToken
        fields = [
            "id", "user", "username", "description", "prefix", "created_at", "expires_at",
            "last_used_at", "revoked_at", "is_usable",
        ]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    """What a client sends to get a new token for itself."""

    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    lifetime_hours = serializers.IntegerField(
        min_value=1,
        max_value=24 * 365,
        required=False,
        allow_null=True,
        default=None,
        help_text="Hours until the token expires (1 to 8760). Omit for a token that does not expire.",
    )


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    """The one answer that carries the token text: it is not stored, so it cannot be shown again."""

    token = serializers.CharField(read_only=True, help_text="Shown once: only its hash is stored.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class RoleAssignmentSerializer(ModelCleanSerializer):
    """A role given to one user or one group at one scope (docs/roles.md)."""

    scope_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, help_text=(
        "The id of the workspace, host pool or application group scope_type names; omitted or null for 'all'."))

    class Meta:
        model = RoleAssignment
        fields = ["id", "role", "user", "group", "scope_type", "scope_id", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        merged = {name: getattr(self.instance, name) for name in ("user", "group", "scope_type", "scope_id")
                  } if self.instance is not None else {}
        merged.update(attrs)
        errors: dict[str, str] = {}
        if (merged.get("user") is None) == (merged.get("group") is None):
            errors["user"] = "Give the role to a user or to a group: exactly one of user and group."
        scope_type = merged.get("scope_type")
        if scope_type == ScopeType.ALL and merged.get("scope_id") is not None:
            errors["scope_id"] = "The scope 'all' names no object: leave scope_id out."
        elif scope_type and scope_type != ScopeType.ALL and merged.get("scope_id") is None:
            errors["scope_id"] = f"Name the {scope_type} with scope_id."
        if errors:
            raise serializers.ValidationError(errors)
        return super().validate(attrs)


class RoleSerializer(serializers.Serializer):
    """One built-in role: what it may do, and at which scopes it may be given."""

    name = serializers.CharField()
    description = serializers.CharField()
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ScopeType.choices))
    actions = serializers.ListField(child=serializers.CharField(), help_text="<kind>.<verb>, sorted.")
