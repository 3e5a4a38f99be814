"""The dashboard: every pool's hosts and sessions, the hosts that need attention, the last day's
connections."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from portal import charts, overview
from portal.access import staff_required
from portal.views.responses import page

DASHBOARD_FRAGMENTS = {"summary": "portal/_dashboard_cards.html", "pools": "portal/_pool_table.html",
                       "attention": "portal/_attention.html"}


@staff_required
@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    rows, attention = overview.pools_with_counts(), overview.hosts_needing_attention()
    context = {"pool_rows": rows, "attention": attention, "totals": overview.estate_totals(rows, len(attention)),
               "nav": "dashboard"}
    if request.GET.get("fragments") != "1":
        stats = overview.connection_stats()
        context.update(
            stats=stats,
            column_chart=charts.hourly_columns(stats.hours),
            error_chart=charts.horizontal_bars([(e.code, e.count) for e in stats.by_error]),
        )
    return page(request, "portal/dashboard.html", context, fragments=DASHBOARD_FRAGMENTS)
