"""The dashboard: every pool's hosts and sessions, the hosts that need attention, the last day's
connections."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from broker.models import Connection, HostPool, SessionHost
from portal import charts, overview
from portal.access import portal_user_required, readable
from portal.views.responses import page

DASHBOARD_FRAGMENTS = {"summary": "portal/_dashboard_cards.html", "pools": "portal/_pool_table.html",
                       "attention": "portal/_attention.html"}


@portal_user_required
@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    # Only what the user's roles let them read: a pool-scoped operator sees their pool's figures.
    rows = overview.pools_with_counts(readable(request, HostPool.objects.all()))
    attention = overview.hosts_needing_attention(hosts=readable(request, SessionHost.objects.all()))
    context = {"pool_rows": rows, "attention": attention, "totals": overview.estate_totals(rows, len(attention)),
               "nav": "dashboard"}
    if request.GET.get("fragments") != "1":
        stats = overview.connection_stats(connections=readable(request, Connection.objects.all()))
        context.update(
            stats=stats,
            column_chart=charts.hourly_columns(stats.hours),
            error_chart=charts.horizontal_bars([(e.code, e.count) for e in stats.by_error]),
        )
    return page(request, "portal/dashboard.html", context, fragments=DASHBOARD_FRAGMENTS)
