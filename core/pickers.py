"""Pickers name only what their user may see: the one place where the choices of a form's, an admin page's, a
filter form's or an API form's object fields are cut down to ``Grants.choices`` (core/authorization.py).

A choice outside them is refused by the field itself, with the answer an id that does not exist gets (the
form's "Select a valid choice", the API's 400 "object does not exist"), so a refusal tells nothing about what
exists. Where an allowed choice would put the object is then checked at save time by ``Grants.allows``, as
before: two questions (may you name it? may the object go there?), each asked in one place.
"""
from __future__ import annotations

from django import forms
from django.db.models import Model

from core.authorization import Grants


def limit_field(field: forms.Field, model: type[Model], path: str, grants: Grants) -> forms.Field:
    """Cut a form field that chooses objects (``model``'s ``path``) down to what ``grants`` may pick."""
    if isinstance(field, forms.ModelChoiceField):  # ModelMultipleChoiceField too
        field.queryset = grants.choices(field.queryset, model, path)
    return field


def limit_form(form: forms.BaseForm, grants: Grants) -> forms.BaseForm:
    """Every object field of a model form, each named by the model field it edits."""
    model = form._meta.model
    for name, field in form.fields.items():
        limit_field(field, model, name, grants)
    return form
