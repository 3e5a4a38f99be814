"""Turn model-layer and database errors into API answers, never a traceback."""
from __future__ import annotations

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        return Response(as_serializer_error(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (ProtectedError, RestrictedError)):
        blocking = sorted({f"{obj._meta.verbose_name}: {obj}" for obj in list(exc.protected_objects)[:10]})
        return Response(
            {"detail": "This object is still in use and cannot be deleted.", "in_use_by": blocking},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, IntegrityError):
        # A race past validation (two writers at once) or a database-level invariant.
        log.warning("integrity error on %s: %s", context.get("request") and context["request"].path, exc)
        return Response(
            {"detail": "The change conflicts with existing data or breaks a rule of the model.",
             "reason": str(exc).splitlines()[0][:300]},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)
