"""``/api/v1/audit/``: the audit log (core/audit.py), read-only, filtered and paginated as every list is, and
exported as CSV with ``?format=csv`` (the same filters, streamed, at most ``CSV_MAX_ROWS`` rows)."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import renderers, serializers
from rest_framework.response import Response

from core.api.viewsets import ReadOnlyViewSet
from core.filtersets import AuditEventFilterSet
from core.models import AuditEvent

# Enough for a year of a busy deployment's administration; narrow the filters (at_after, at_before) for more.
CSV_MAX_ROWS = 100_000
CSV_COLUMNS = [
    "id", "at", "action", "result", "actor_id", "actor_name", "credential", "token_id", "token_name", "surface",
    "object_type", "object_id", "object_repr", "changes", "detail", "client_address", "user_agent", "request_id",
]


class CsvRenderer(renderers.BaseRenderer):
    """Chosen by ``?format=csv``; the view streams the rows itself (``AuditEventViewSet.csv``), so this only
    renders what else the view may answer, an error, as one line of text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return (json.dumps(data) + "\n").encode()


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = CSV_COLUMNS
        read_only_fields = fields


class _Echo:
    """A file-like object whose write() returns the line, for csv.writer feeding a streaming response."""

    def write(self, value: str) -> str:
        return value


class AuditEventViewSet(ReadOnlyViewSet):
    """What administrators did: who (user, credential, address), what (action, object, changed fields with
    secrets masked), when. Read-only: events are never changed or deleted, only purged after
    WVD_AUDIT_RETENTION_DAYS. ``?format=csv`` exports the filtered events (newest first, at most 100,000)."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    # The default permission (core.permissions.HasRole): auditevent.view, which lies in no scope but 'all'
    # (Desktop Virtualization Reader or Contributor of everything, and superusers): the log names everyone.
    renderer_classes = [renderers.JSONRenderer, renderers.BrowsableAPIRenderer, CsvRenderer]
    search_fields = ["actor_name", "object_repr", "detail"]
    ordering_fields = ["at", "action", "actor_name", "object_type"]

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"], description="csv: export every event "
                                     "the filters match (up to 100,000), not one page.")],
        responses={200: OpenApiResponse(AuditEventSerializer(many=True), "A page of events, or the CSV export.")},
    )
    def list(self, request, *args, **kwargs) -> Response | StreamingHttpResponse:
        if request.accepted_renderer.format == CsvRenderer.format:
            return self.csv(self.filter_queryset(self.get_queryset()))
        return super().list(request, *args, **kwargs)

    def csv(self, events) -> StreamingHttpResponse:
        response = StreamingHttpResponse(_csv_lines(events[:CSV_MAX_ROWS]), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit.csv"'
        response["X-Max-Rows"] = str(CSV_MAX_ROWS)
        return response


def _csv_lines(events) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in events.iterator(chunk_size=2000):
        row = []
        for column in CSV_COLUMNS:
            value = getattr(event, column)
            if column == "changes":
                value = json.dumps(value, sort_keys=True, ensure_ascii=False)
            elif column == "at":
                value = value.isoformat()
            row.append(_no_formula("" if value is None else str(value)))
        yield writer.writerow(row)


def _no_formula(text: str) -> str:
    """A cell a spreadsheet would run as a formula (=, +, -, @ first) is quoted with an apostrophe: an object's
    name or a user agent is anyone's text (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
