"""Filter types every app's filtersets share, and the filter backend every API list uses."""
from __future__ import annotations

from datetime import timezone as dt_timezone

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField, IsoDateTimeRangeField, RangeField
from django_filters.rest_framework import DjangoFilterBackend

from core.authorization import grants_for_request
from core.pickers import limit_field


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date and time, turned to UTC as it is read.

    Python takes UTC offsets up to ±23:59 and any date from year 1 to 9999 in its own offset; PostgreSQL
    refuses offsets beyond ±15:59 and Django's SQLite backend overflows turning 0001-01-01T00:00+01:00 into
    UTC. In UTC every database takes the value, and one that has no UTC form is a 400, not a 500.
    """

    default_error_messages = {"out_of_range": "Enter a date and time between the years 1 and 9999 in UTC."}

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(dt_timezone.utc)
        except OverflowError:
            raise ValidationError(self.error_messages["out_of_range"], code="out_of_range") from None


class UtcIsoDateTimeRangeField(IsoDateTimeRangeField):
    def __init__(self, *args, **kwargs):
        # IsoDateTimeRangeField's own __init__ names its two fields; the range is the same with ours.
        RangeField.__init__(self, (UtcIsoDateTimeField(), UtcIsoDateTimeField()), *args, **kwargs)


class DateTimeFromToRangeFilter(django_filters.IsoDateTimeFromToRangeFilter):
    """``<name>_after`` / ``<name>_before`` in ISO 8601, compared in UTC (see ``UtcIsoDateTimeField``).

    A subclass of django-filter's, so the schema describes it as before.
    """

    field_class = UtcIsoDateTimeRangeField


class ReadableFilterBackend(DjangoFilterBackend):
    """django-filter's backend, with every filter by a related object (``?host_pool=``) offering and taking
    only what the caller may pick (``Grants.choices``, core/pickers.py): the browsable API's filter form lists
    nothing else, and another id is a 400, as an id that does not exist is."""

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is None or getattr(view, "swagger_fake_view", False):
            return filterset
        grants = grants_for_request(request)
        for name, filter_ in filterset.filters.items():
            if isinstance(filter_, (django_filters.ModelChoiceFilter, django_filters.ModelMultipleChoiceFilter)):
                field = filter_.field  # built here, from the filter's queryset
                limit_field(field, queryset.model, filter_.field_name, grants)
        return filterset
