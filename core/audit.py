"""The audit log's one recorder: every surface (the REST API, the Django admin, the portal, host commands)
calls ``record`` for what an administrator does; docs/audit.md says what is recorded.

Who and from where come from the HTTP request: the one passed in, or the request being handled in this
context (``AuditRequestMiddleware`` sets it, so a service function deep below a view, e.g. a host command,
records who asked without being handed the request). The actor is resolved when the event is written, so
a REST request authenticated by an API token is recorded with that token (DRF sets ``user`` and ``auth`` on
the Django request as it authenticates). Outside a request (Celery tasks, management commands) the actor is
the system.

Events are written with the caller's database connection, so inside the caller's transaction: a change
that rolls back takes its event with it, and a change is never recorded as done when it was not.

Generic by design: the API's base viewsets (core/api/viewsets.py) and every ModelAdmin registered on the
admin site (core/adminsite.py) record creates, changes and deletes of any model, so a new model (role
assignments, say) is audited without code of its own; ``MODEL_VERBS`` names the few models whose create and
delete have a verb of their own (an assignment is "assign").
"""
from __future__ import annotations

import contextvars
import datetime
import decimal
import logging
import re
import uuid
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import models
from django.http import HttpRequest

from core.choices import AuditAction, AuditCredential, AuditSurface
from core.clientaddress import client_address
from core.models import ApiToken, AuditEvent

log = logging.getLogger(__name__)

MASK = "********"
USER_AGENT_MAX = 256
REPR_MAX = 200
DETAIL_MAX = 500
VALUE_MAX = 500  # a changed value longer than this is cut (a description, a PEM): the log says what changed
REQUEST_ID_HEADER = "X-Request-ID"

# Field names whose values are never stored, before or after: a change is recorded as masked -> masked.
SECRET_FIELD = re.compile(r"password|secret|key|hash|token(?!.*_at$)|private", re.IGNORECASE)

# model_name -> the verbs of its create, change and delete (by model name, not label, so a model in any app
# is covered: the role assignments live wherever their app puts them).
MODEL_VERBS: dict[str, tuple[str, str, str]] = {
    "assignment": (AuditAction.ASSIGN, AuditAction.ASSIGNMENT_CHANGE, AuditAction.UNASSIGN),
    "roleassignment": (AuditAction.ROLE_GRANT, AuditAction.ROLE_CHANGE, AuditAction.ROLE_REVOKE),
    "apitoken": (AuditAction.TOKEN_ISSUE, AuditAction.CHANGE, AuditAction.DELETE),
}
DEFAULT_VERBS = (AuditAction.CREATE, AuditAction.CHANGE, AuditAction.DELETE)

_current_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("wvd_audit_request",
                                                                                     default=None)


# --- the request being handled -------------------------------------------------------------------------


class AuditRequestMiddleware:
    """Makes the request being handled the one ``record`` asks who and where of, and gives it a request id
    (answered as X-Request-ID) that every event it causes shares. After AuthenticationMiddleware."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        token = _enter(request)
        try:
            response = self.get_response(request)
        finally:
            _current_request.reset(token)
        response[REQUEST_ID_HEADER] = request.audit_request_id
        return response

    async def _acall(self, request: HttpRequest):
        token = _enter(request)
        try:
            response = await self.get_response(request)
        finally:
            _current_request.reset(token)
        response[REQUEST_ID_HEADER] = request.audit_request_id
        return response


def _enter(request: HttpRequest) -> contextvars.Token:
    request.audit_request_id = uuid.uuid4().hex
    return _current_request.set(request)


def current_request() -> HttpRequest | None:
    return _current_request.get()


# --- what an object was --------------------------------------------------------------------------------


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The object's concrete field values as JSON values (foreign keys as ids), secrets masked. Deferred
    fields (icons) are left out rather than loaded, and so are the times every save sets (``auto_now``): the
    event's own time says when, and a save that changed nothing else is no change."""
    deferred = instance.get_deferred_fields()
    values = {}
    for field in instance._meta.concrete_fields:
        if field.attname in deferred or getattr(field, "auto_now", False):
            continue
        values[field.name] = _masked(field.name, _json_value(field.value_from_object(instance)))
    return values


def changes_between(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list[Any]]:
    """Field -> [before, after] for the fields whose values differ (a create: [None, value]; a delete:
    [value, None])."""
    before, after = before or {}, after or {}
    return {name: [before.get(name), after.get(name)] for name in sorted(set(before) | set(after))
            if before.get(name) != after.get(name) or (name in before) != (name in after)}


def _masked(name: str, value: Any) -> Any:
    return MASK if SECRET_FIELD.search(name) and value not in (None, "") else value


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"({len(value)} bytes)"
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    text = str(value)
    return text if len(text) <= VALUE_MAX else text[:VALUE_MAX - 1] + "…"


# --- who, how and from where ---------------------------------------------------------------------------


def _who(request: HttpRequest | None) -> dict[str, Any]:
    if request is None:
        return {"surface": AuditSurface.SYSTEM, "credential": AuditCredential.NONE}
    fields: dict[str, Any] = {
        "surface": _surface(request.path),
        "client_address": client_address(request),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX],
        "request_id": getattr(request, "audit_request_id", ""),
        "credential": AuditCredential.NONE,
    }
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        fields.update(actor_id=user.pk, actor_name=user.get_username()[:150])
        auth = getattr(request, "auth", None)
        if isinstance(auth, ApiToken):
            name = f"{auth.prefix}… {auth.description}".strip()
            fields.update(credential=AuditCredential.API_TOKEN, token_id=auth.pk, token_name=name[:220])
        else:
            fields["credential"] = AuditCredential.SESSION
    return fields


def _surface(path: str) -> str:
    for prefix, surface in (("/api/", AuditSurface.API), ("/admin/", AuditSurface.ADMIN),
                            ("/portal/", AuditSurface.PORTAL)):
        if path.startswith(prefix):
            return surface
    return AuditSurface.WEB


# --- the one recorder ----------------------------------------------------------------------------------


def record(action: str, obj: models.Model | None = None, *, changes: dict[str, list[Any]] | None = None,
           detail: str = "", result: str = "ok", request: HttpRequest | None = None,
           object_type: str = "", object_id: str = "", object_repr: str = "") -> AuditEvent:
    """Write one event: ``action`` (an ``AuditAction``) done to ``obj`` (or the object named by
    ``object_type``, ``object_id`` and ``object_repr``), by whoever made ``request`` (default: the request
    being handled; none: the system). ``changes`` is field -> [before, after], already masked
    (``snapshot``); ``result`` is what a host command got back ("ok" for every other action)."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or ("" if obj.pk is None else str(obj.pk))
        object_repr = object_repr or str(obj)
    request = request if request is not None else current_request()
    event = AuditEvent.objects.create(
        action=action, result=result, object_type=object_type, object_id=object_id[:64],
        object_repr=object_repr[:REPR_MAX], changes=changes or {}, detail=detail[:DETAIL_MAX], **_who(request),
    )
    if request is not None:
        _recorded(request).add((object_type, object_id))
    log.info("audit: %s %s %s %s%s", event.actor_name or "system", action, object_type, object_repr,
             "" if result == "ok" else f" ({result})")
    return event


def _recorded(request) -> set[tuple[str, str]]:
    """The objects this request has recorded events about (on the Django request, which a DRF request wraps)."""
    http_request = getattr(request, "_request", request)
    if not hasattr(http_request, "audit_recorded"):
        http_request.audit_recorded = set()
    return http_request.audit_recorded


def mark_recorded(request: HttpRequest, obj: models.Model) -> None:
    """Count ``obj`` as recorded in this request (``recorded_in``), though no event was written about it."""
    _recorded(request).add((obj._meta.label_lower, str(obj.pk)))


def recorded_in(request: HttpRequest, obj: models.Model) -> bool:
    """Whether this request has already recorded an event about ``obj``."""
    return (obj._meta.label_lower, str(obj.pk)) in _recorded(request)


def many_to_many_changes(form) -> dict[str, list[Any]]:
    """Field -> [before, after] for the changed many-to-many fields of a ModelForm (a user's groups), as
    sorted names: a model snapshot has only the row's own columns."""
    many = {field.name for field in form.instance._meta.many_to_many}
    changes = {}
    for name in form.changed_data:
        if name in many:
            before = sorted(str(item) for item in (form.initial.get(name) or []))
            after = sorted(str(item) for item in (form.cleaned_data.get(name) or []))
            if before != after:
                changes[name] = [before, after]
    return changes


def verbs_for(model: type[models.Model]) -> tuple[str, str, str]:
    return MODEL_VERBS.get(model._meta.model_name, DEFAULT_VERBS)


def record_saved(instance: models.Model, before: dict[str, Any] | None, *, request: HttpRequest | None = None,
                 extra_changes: dict[str, list[Any]] | None = None) -> AuditEvent | None:
    """A create (``before`` is None) or a change of ``instance``, which is saved already. A change that
    changed nothing is not recorded."""
    create, change, _ = verbs_for(type(instance))
    changes = {**changes_between(before, snapshot(instance)), **(extra_changes or {})}
    if before is not None and not changes:
        return None
    return record(create if before is None else change, instance, changes=changes, request=request)


def record_deleted(instance: models.Model, *, request: HttpRequest | None = None) -> AuditEvent:
    """The deletion of ``instance``: call it before deleting, in the same transaction (after, it has no id)."""
    _, _, delete = verbs_for(type(instance))
    return record(delete, instance, changes=changes_between(snapshot(instance), None), request=request)


def saved_state(instance: models.Model) -> dict[str, Any] | None:
    """The stored row's snapshot (before a change the caller has already applied to ``instance``), or None
    for an object not saved yet."""
    if instance.pk is None or instance._state.adding:
        return None
    stored = type(instance)._base_manager.filter(pk=instance.pk).first()
    return None if stored is None else snapshot(stored)


def record_staff_sign_in(sender, request, user, **kwargs) -> None:
    """A staff member signed in (admin, portal): user_logged_in, connected by CoreConfig.ready()."""
    if user is not None and user.is_staff and request is not None:
        if not hasattr(request, "user"):
            request.user = user  # a request made up to sign in (Client.force_login) has none yet
        record(AuditAction.SIGN_IN, user, request=request)
