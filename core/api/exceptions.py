"""Turn model-layer and database errors into API answers, never a traceback.

Django ValidationError -> 400 with field errors; a body over DATA_UPLOAD_MAX_MEMORY_SIZE -> 413;
ProtectedError/RestrictedError (deleting an object still in use) -> 409; IntegrityError (a race past
validation, or a database rule) -> 409. Every refusal of client input is logged at INFO with the
path, so a misbehaving client can be traced.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

log = logging.getLogger(__name__)


def exception_handler(exc, context):
    request = context.get("request")
    where = f"{request.method} {request.path}" if request is not None else "?"
    if isinstance(exc, RequestDataTooBig):
        # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE; say so instead of a bare 400.
        log.info("refused %s: body over %s bytes", where, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        return Response({"detail": f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."},
                         status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, DjangoValidationError):
        errors = as_serializer_error(exc)
        if NON_FIELD_ERRORS in errors:
            errors[api_settings.NON_FIELD_ERRORS_KEY] = errors.pop(NON_FIELD_ERRORS)
        log.info("refused %s: %s", where, errors)
        set_rollback()
        return Response(errors, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (ProtectedError, RestrictedError)):
        in_use_by = exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
        # At most ten names: enough to act on, and a pool with 5,000 hosts must not make a 5,000-line answer.
        blocking = sorted({f"{obj._meta.verbose_name}: {obj}" for obj in list(in_use_by)[:10]})
        log.info("refused %s: still in use by %s", where, blocking)
        set_rollback()
        return Response(
            {"detail": "This object is still in use and cannot be deleted.", "in_use_by": blocking},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, IntegrityError):
        # A race past validation (two writers at once) or a database-level invariant.
        log.warning("integrity error on %s: %s", where, exc)
        set_rollback()
        return Response(
            {"detail": "The change conflicts with existing data or breaks a rule of the model.",
             "reason": str(exc).splitlines()[0][:300]},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, exceptions.ValidationError):
        log.info("refused %s: %s", where, exc.detail)
    return drf_exception_handler(exc, context)
