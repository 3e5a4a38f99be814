"""The portal's generic edit view, after NetBox's ObjectEditView: one class creates or edits an object with
a ModelForm, and each create or edit page is a declaration of which object, which form, what to say and
where to go next, not a hand-written function per model and verb."""
from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpResponse
from django.shortcuts import redirect
from django.utils.decorators import method_decorator
from django.views import View

from core import audit
from core.authorization import ADD, CHANGE, action_for
from core.pickers import limit_form
from portal.access import allowed, forbidden, grants, portal_user_required, readable
from portal.views.responses import GonePage, Link, form_page

log = logging.getLogger(__name__)


# On dispatch, so every subclass is staff only, checked before the HTTP method is; as_view() copies the
# dispatch's portal_guarded mark onto the URL's callback, where the permission tests look for it.
@method_decorator(portal_user_required, name="dispatch")
class ObjectEditView(View):
    """Create or edit one object with a ModelForm.

    Which object (the URL's ``pk`` names it, or its parent when there is a ``parent_queryset``):
      - edit: ``queryset``; a pk that names nothing answers ``gone``.
      - create: no ``queryset``.
      - create under a parent: ``parent_queryset`` (a pk that names nothing answers ``parent_gone``) and
        ``parent_field``, the object's foreign key to its parent, which the view fills in.
      - edit the one object of a parent (a group's desktop): ``parent_queryset`` and ``queryset``; the object
        is the one whose ``parent_field`` is the parent, or the ``gone`` page.
      - edit an object that belongs to a parent: ``queryset`` and ``parent_field``; the parent is the object's.

    What the page shows and says: ``form_class``, ``template_name``, ``nav`` (the sidebar entry), ``title``,
    ``cancel_url``; after a save, ``success_message`` to the admin, ``log_message`` to the log (after
    "<user> "), then ``success_url``. Titles and messages are format strings over ``object``, ``parent`` and
    what ``message_fields()`` adds; the log may also name ``changed`` (the fields that changed). URLs are
    ``Link``s. ``form_data()``, ``get_initial()`` and ``get_extra_context()`` are the hooks for the rest.

    Roles (core/authorization.py): the page needs its action (``<kind>.add`` for a create, ``.change`` for an
    edit) held somewhere, else 403; an object or parent the user may not read is ``gone`` (404); an object
    they may read but not change is 403; and the object as the form would save it must be allowed too (a
    create inside the scope, no moving out of it), else 403 and nothing saved. The form's pickers offer only
    what the user may see (core/pickers.py); another choice is the field's error, like an id that does not exist.

    A POST saves a valid form and redirects with the message; otherwise the form page answers, 400 when
    the form has errors (what was typed is kept). A save that the database refuses (a race with another
    admin, a trigger) becomes an error on the form, never a 500.
    """

    http_method_names = ["get", "head", "post"]
    pk_url_kwarg = "pk"

    queryset: ClassVar[QuerySet | None] = None
    gone: ClassVar[GonePage | None] = None
    parent_queryset: ClassVar[QuerySet | None] = None
    parent_gone: ClassVar[GonePage | None] = None
    parent_field: ClassVar[str | None] = None

    form_class: ClassVar[type[ModelForm]]
    template_name = "portal/form.html"
    nav = ""
    title = ""
    cancel_url: ClassVar[Link | None] = None
    success_url: ClassVar[Link]
    success_message = ""
    log_message = ""

    object: Model | None = None
    parent: Model | None = None

    def __init_subclass__(cls, **kwargs) -> None:
        """A declaration that cannot work fails when the module is imported, not on an admin's request."""
        super().__init_subclass__(**kwargs)
        missing = [name for name, needed in [
            ("form_class", True), ("success_url", True),
            ("gone", cls.queryset is not None),
            ("parent_gone", cls.parent_queryset is not None),
            ("parent_field", cls.parent_queryset is not None),
        ] if needed and getattr(cls, name, None) is None]
        if missing:
            raise ImproperlyConfigured(f"{cls.__qualname__} needs {', '.join(missing)}")

    def get(self, request, *args, **kwargs) -> HttpResponse:
        return self.answer()

    def post(self, request, *args, **kwargs) -> HttpResponse:
        return self.answer()

    def answer(self) -> HttpResponse:
        missing = self.find()
        if missing is not None:
            return missing
        form = self.get_form()
        self.object = form.instance  # the new object, on a create
        if self.request.method == "POST" and form.is_valid():
            # Where the object would be after the save must be within the roles too: no creating outside
            # the scope, no moving an object out of it.
            if not allowed(self.request, self.verb, form.instance):
                return forbidden(self.request, f"{self.verb} {form.instance._meta.verbose_name} there")
        if self.request.method == "POST" and form.is_valid() and self.save(form):
            messages.success(self.request, self.get_success_message())
            log.info("%s %s", self.request.user, self.get_log_message(form))
            return redirect(self.success_url.url(self))
        return self.render_form(form)

    def find(self) -> HttpResponse | None:
        """Find the parent and the object the URL names: None when found, else the gone page (deleted
        meanwhile, by another admin, an agent or the API)."""
        # The declared querysets are only ever filtered here, never evaluated themselves, so no rows are
        # cached on the class between requests.
        pk = self.kwargs.get(self.pk_url_kwarg)
        model = self.form_class._meta.model
        if not grants(self.request).anywhere(action_for(model, self.verb)):
            return forbidden(self.request, f"{self.verb} {model._meta.verbose_name}")
        # What the user may not read is gone as far as they can tell (the API answers 404 too).
        if self.parent_queryset is not None:
            self.parent = readable(self.request, self.parent_queryset).filter(pk=pk).first()
            if self.parent is None:
                return self.parent_gone.answer(self.request, self)
            if self.queryset is not None:
                self.object = readable(self.request, self.queryset).filter(**{self.parent_field: self.parent}).first()
        elif self.queryset is not None:
            self.object = readable(self.request, self.queryset).filter(pk=pk).first()
            if self.object is not None and self.parent_field:
                self.parent = getattr(self.object, self.parent_field)
        if self.queryset is not None and self.object is None:
            return self.gone.answer(self.request, self)
        if self.object is not None and not allowed(self.request, CHANGE, self.object):
            return forbidden(self.request, f"change {self.object._meta.verbose_name}")
        return None

    @property
    def verb(self) -> str:
        """What the page does, for the roles: edits an object (``queryset``) or creates one."""
        return CHANGE if self.queryset is not None else ADD

    def get_form(self) -> ModelForm:
        """The form over the object (a new one on a create), bound to what was posted."""
        form = self.form_class(*self.form_data(), instance=self.object, initial=self.get_initial())
        limit_form(form, grants(self.request))  # its pickers name only what the user may see (core/pickers.py)
        if self.parent is not None:
            # Before validation: the model's rules (unique in the group, the group's type) need the parent.
            setattr(form.instance, self.parent_field, self.parent)
        return form

    def form_data(self) -> tuple[Any, Any]:
        """The form's data and files: an empty POST shows the form unbound, as a GET does."""
        return self.request.POST or None, self.request.FILES or None

    def get_initial(self) -> dict[str, Any]:
        return {}

    def save(self, form: ModelForm) -> bool:
        """Save a valid form; a database rule that only the database could see (a race with another admin,
        a trigger) becomes a form error instead of a 500."""
        try:
            with transaction.atomic():  # the change and its audit event (core/audit.py) together
                before = audit.saved_state(form.instance)  # the form has applied the new values to the instance
                form.save()
                audit.record_saved(form.instance, before, request=self.request,
                                   extra_changes=audit.many_to_many_changes(form))
        except IntegrityError as exc:
            log.info("portal save of %s refused by the database: %s", form.instance._meta.label, exc)
            form.add_error(None, integrity_message(exc))
            return False
        return True

    def message_fields(self) -> dict[str, Any]:
        """What titles and messages may name."""
        return {"object": self.object, "parent": self.parent}

    def get_success_message(self) -> str:
        return self.success_message.format(**self.message_fields())

    def get_log_message(self, form: ModelForm) -> str:
        return self.log_message.format(**self.message_fields(), changed=", ".join(form.changed_data))

    def get_extra_context(self, form: ModelForm) -> dict[str, Any]:
        return {}

    def render_form(self, form: ModelForm) -> HttpResponse:
        context = {
            "nav": self.nav, "title": self.title.format(**self.message_fields()),
            "cancel_url": self.cancel_url.url(self) if self.cancel_url else None,
            "multipart": form.is_multipart(),  # an icon upload
            **self.get_extra_context(form),
        }
        return form_page(self.request, self.template_name, context, form)


def integrity_message(exc: IntegrityError) -> str:
    """What to tell the admin when the database refused a save."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # Our triggers raise readable sentences (core.dbrules); constraint names are not for people.
    if text and " " in text and "constraint" not in text.lower() and "foreign key" not in text.lower():
        return f"The database refused the change: {text}"
    return ("The change could not be saved: it conflicts with a change made meanwhile (a name now taken, or a "
            "related object deleted). Reload the page and try again.")
