"""Base viewsets every app's API builds on: safe JSON parsing, documented error answers,
writes in a transaction, each recorded in the audit log in that same transaction."""
from __future__ import annotations

from django.db import transaction
from rest_framework import mixins, viewsets
from rest_framework.parsers import FormParser, MultiPartParser

from core import audit
from core.api.parsers import JSONParser
from core.api.schema import ApiAutoSchema
from core.authorization import grants_for_request


class ApiViewSetMixin:
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    # Adds the error answers (401, 403, 404, 400, 409, 413) to each operation's description.
    schema = ApiAutoSchema()

    def get_queryset(self):
        """Only the objects the caller's roles let them read (core/authorization.py): one WHERE clause. An
        object outside it is a 404 for every action, so its existence is not told either."""
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset  # Schema generation: no user.
        return grants_for_request(self.request).readable(queryset)


class AtomicWritesMixin:
    """Each write in its own transaction (a savepoint inside an outer one), recorded in the audit log
    (core/audit.py) inside it: a write the database refuses leaves no event, and no write goes unrecorded.

    A write can touch several rows (an application group and its Desktop, a deletion's cascade); and
    when the database refuses one (an IntegrityError from a race or a database rule), the savepoint
    rolls back cleanly instead of leaving an outer transaction unusable.
    """

    may_conflict = True  # Its writes can answer 409 (object in use, database rule): said in the schema.

    def perform_create(self, serializer) -> None:
        with transaction.atomic():
            super().perform_create(serializer)
            audit.record_saved(serializer.instance, None, request=self.request)

    def perform_update(self, serializer) -> None:
        with transaction.atomic():
            before = audit.snapshot(serializer.instance)  # save() changes this very instance
            super().perform_update(serializer)
            audit.record_saved(serializer.instance, before, request=self.request)

    def perform_destroy(self, instance) -> None:
        with transaction.atomic():
            audit.record_deleted(instance, request=self.request)  # before: afterwards it has no id
            super().perform_destroy(instance)


class ManagementViewSet(ApiViewSetMixin, AtomicWritesMixin, viewsets.ModelViewSet):
    """List, retrieve, create, update and delete."""


class ReadOnlyViewSet(ApiViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """List and retrieve: records that the system writes (sessions, connections, certificates)."""


class ListRetrieveUpdateViewSet(
    ApiViewSetMixin,
    AtomicWritesMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Objects that are created and deleted with their parent: no POST, no DELETE (405)."""
