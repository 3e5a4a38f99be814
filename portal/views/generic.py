"""What the portal's create and edit pages share: saving a valid form, and the form page itself."""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

log = logging.getLogger(__name__)


def form_page(request: HttpRequest, template: str, context: dict, form) -> HttpResponse:
    """A form page; a bound invalid form answers 400, with the errors beside what was typed."""
    status = 400 if form.is_bound and form.errors else 200
    return render(request, template, {**context, "form": form}, status=status)


def form_context(title: str, cancel_url: str, nav: str, **extra) -> dict:
    return {"title": title, "cancel_url": cancel_url, "nav": nav, **extra}


def save(form, request: HttpRequest) -> bool:
    """Save a valid form; a database rule that only the database could see (a race with another admin,
    a trigger) becomes a form error instead of a 500."""
    try:
        with transaction.atomic():
            form.save()
    except IntegrityError as exc:
        log.info("portal save of %s refused by the database: %s", form.instance._meta.label, exc)
        form.add_error(None, _integrity_message(exc))
        return False
    return True


def _integrity_message(exc: IntegrityError) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # Our triggers raise readable sentences (core.dbrules); constraint names are not for people.
    if text and " " in text and "constraint" not in text.lower() and "foreign key" not in text.lower():
        return f"The database refused the change: {text}"
    return ("The change could not be saved: it conflicts with a change made meanwhile (a name now taken, or a "
            "related object deleted). Reload the page and try again.")
