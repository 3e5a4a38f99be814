"""The audit log (core/audit.py): who did what to which object, when and from where; filtered with the same
filters as /api/v1/audit/, whose CSV export the page links to with the filters applied."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from core.filtersets import AuditEventFilterSet
from core.models import AuditEvent
from core.authorization import grants_for_request
from portal.access import forbidden, portal_user_required, readable
from portal.views.responses import PAGE_SIZE, form_page


@portal_user_required
@require_safe
def audit_list(request: HttpRequest) -> HttpResponse:
    # auditevent.view lies in no scope but 'all': readers and contributors of everything, and superusers.
    if not grants_for_request(request).anywhere("auditevent.view"):
        return forbidden(request, "read the audit log")
    everything = readable(request, AuditEvent.objects.all())
    filters = AuditEventFilterSet(request.GET or None, queryset=everything)
    # An invalid filter shows its error beside the field and no rows, never every row.
    events = filters.qs if filters.is_bound and filters.is_valid() else (
        everything.none() if filters.is_bound else everything)
    page = Paginator(events.order_by("-at", "-id"), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"page": page, "query_string": query.urlencode(), "nav": "audit"}
    return form_page(request, "portal/audit_list.html", context, filters.form)
