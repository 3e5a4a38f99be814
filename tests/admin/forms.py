"""Post an admin form back the way a browser would, from the page the admin rendered."""
from __future__ import annotations

from django import forms
from django.http import HttpResponse


def _add_form(data: dict[str, object], form: forms.BaseForm) -> None:
    for bound in form:
        value = bound.value()
        if isinstance(bound.field, forms.BooleanField):
            if value:
                data[bound.html_name] = "on"  # An unticked box is simply absent from a browser's post.
        elif value is not None:
            data[bound.html_name] = value


def form_data(response: HttpResponse) -> dict[str, object]:
    """The fields of an admin add/change page with their current values, inlines included."""
    data: dict[str, object] = {}
    _add_form(data, response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        _add_form(data, inline.formset.management_form)
        for form in inline.formset.forms:
            _add_form(data, form)
    return data


def add_inline_rows(data: dict[str, object], prefix: str, rows: list[dict[str, object]]) -> None:
    """Append new rows to an inline formset, as clicking "Add another" and filling them in does."""
    start = int(data[f"{prefix}-TOTAL_FORMS"])
    for offset, row in enumerate(rows):
        for name, value in row.items():
            data[f"{prefix}-{start + offset}-{name}"] = value
    data[f"{prefix}-TOTAL_FORMS"] = start + len(rows)
