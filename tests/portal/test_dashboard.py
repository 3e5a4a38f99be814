"""The dashboard: pools with hosts by state and load, a day of connections, hosts needing attention."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from django.urls import reverse
from django.utils import timezone
from lxml import html

from broker.models import SessionHost
from portal import charts
from portal.overview import HourBucket


def page(response):
    return html.fromstring(response.content)


def test_it_counts_each_pools_hosts_by_state_and_its_sessions_against_capacity(staff, estate):
    doc = page(staff.get(reverse("portal:dashboard")))

    row = doc.xpath(f"//tr[@data-pool-id='{estate['pool'].pk}']")[0]
    cells = [c.text_content().split() for c in row.xpath("td")]
    # available 1 (host-1), draining 1 (host-2), unavailable 2 (host-3, host-4); 2 sessions of 2 up hosts x 2
    assert cells[2:5] == [["1"], ["1"], ["2"]]
    assert cells[5][:3] == ["2", "/", "4"]


def test_it_lists_hosts_needing_attention_with_their_reason(staff, estate):
    doc = page(staff.get(reverse("portal:dashboard")))

    rows = doc.xpath("//div[@data-fragment='attention']//tbody/tr")
    assert [r.xpath("td")[0].text_content() for r in rows] == ["host-3", "host-4"]
    assert "127.0.0.1:3389 refused" in rows[0].text_content()


def test_a_silent_available_host_needs_attention_too(staff, estate, settings):
    settings.HEARTBEAT_INTERVAL, settings.MISSED_HEARTBEATS = 1, 1
    SessionHost.objects.filter(name="host-1").update(last_heartbeat_at=timezone.now() - timedelta(minutes=5))

    doc = page(staff.get(reverse("portal:dashboard")))

    names = [r.xpath("td")[0].text_content() for r in doc.xpath("//div[@data-fragment='attention']//tbody/tr")]
    assert "host-1" in names
    assert "No heartbeat for" in doc.xpath("//tr[@data-host-id]")[names.index("host-1")].text_content()


def test_the_connection_chart_counts_the_last_day_and_failures_by_code(staff, estate):
    response = staff.get(reverse("portal:dashboard"))
    doc = page(response)
    stats = response.context["stats"]

    assert (stats.total, stats.failed, stats.succeeded) == (4, 3, 1)  # the 3-day-old failure is left out
    assert [(e.code, e.count) for e in stats.by_error] == [
        ("ConnectionFailedNoHealthyRdshAvailable", 2), ("ConnectionFailedUserNotAuthorized", 1)]
    bars = doc.xpath("//svg//text[@class='bar-label']")
    assert [b.text for b in bars] == ["ConnectionFailedNoHealthyRdshAvailable", "ConnectionFailedUserNotAuthorized"]
    assert len(doc.xpath("//svg//rect[@class='bar-bad']")) >= 3  # failed parts of columns plus the code bars
    assert "No session host is available" in doc.text_content()  # the explanation beside each code


def test_the_dashboard_says_when_nothing_failed(staff, db):
    assert "No failed connections in the last 24 hours." in staff.get(reverse("portal:dashboard")).content.decode()


def test_the_live_parts_come_as_json_fragments(staff, estate):
    response = staff.get(reverse("portal:dashboard"), {"fragments": "1"})

    assert response["Content-Type"] == "application/json"
    fragments = json.loads(response.content)["fragments"]
    assert set(fragments) == {"summary", "pools", "attention"}
    assert "host-3" in fragments["attention"] and "pool-a" in fragments["pools"]


def test_a_chart_axis_ends_on_a_round_number():
    assert [charts.nice_ceiling(n) for n in (0, 1, 3, 7, 10, 11, 49, 51, 999, 1001)] == \
        [1, 1, 5, 10, 10, 20, 50, 100, 1000, 2000]


def test_columns_stack_failures_on_top_of_successes():
    chart = charts.hourly_columns([HourBucket(datetime(2026, 1, 1, h, tzinfo=UTC), total=t, failed=f)
                                   for h, t, f in [(0, 10, 5), (1, 0, 0)]], height=120, top=10, bottom=10)

    first, empty = chart.columns
    assert first.failed_y + first.failed_height == first.ok_y  # failed sits right on top of the rest
    assert first.ok_y + first.ok_height == chart.plot_bottom == 110
    assert first.failed_height == first.ok_height == 50  # 5 of 10 each, on an axis up to 10
    assert (empty.ok_height, empty.failed_height) == (0, 0)
    assert first.tick == "00:00" and empty.tick == ""


def test_the_longest_bar_fills_the_width():
    chart = charts.horizontal_bars([("A", 4), ("B", 1)], width=148, label_room=48)

    assert [bar.width for bar in chart.bars] == [100, 25]
