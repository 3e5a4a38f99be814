"""Connection diagnostics: search by user, activity id, error code and time; a connection's checkpoint
timeline, bytes, end reason, and its error explained with the documented remedy."""
from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone
from lxml import html

from broker.models import Connection
from wire.errors import describe


def listed(response) -> list[str]:
    return [a.get("href").rstrip("/").rsplit("/", 1)[1]
            for a in html.fromstring(response.content).xpath("//table//td[1]/a")]


def test_connections_are_searched_by_user_activity_error_and_time(staff, estate):
    url = reverse("portal:connections")
    ok, failed, old = estate["ok"], estate["failed"], estate["old"]
    since = (timezone.now() - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")

    assert len(listed(staff.get(url))) == 5
    assert set(listed(staff.get(url, {"user": "outsider"}))) == {str(failed[2].activity_id)}
    assert listed(staff.get(url, {"activity": str(ok.activity_id)})) == [str(ok.activity_id)]
    assert set(listed(staff.get(url, {"error": "ConnectionFailedNoHealthyRdshAvailable"}))) == \
        {str(c.activity_id) for c in failed[:2]}
    assert len(listed(staff.get(url, {"error": "any"}))) == 4
    assert set(listed(staff.get(url, {"since": since}))) == {str(ok.activity_id), str(failed[0].activity_id),
                                                             str(failed[1].activity_id)}
    assert listed(staff.get(url, {"until": (timezone.now() - timedelta(days=2)).strftime("%Y-%m-%d")})) == \
        [str(old.activity_id)]


def test_bad_search_input_is_explained_and_kept(staff, estate):
    response = staff.get(reverse("portal:connections"), {"activity": "not-a-uuid", "error": "NoSuchCode",
                                                         "since": "yesterday", "user": "mem"})

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"activity", "error", "since"}
    assert "An activity id looks like" in response.content.decode()
    doc = html.fromstring(response.content)
    assert doc.get_element_by_id("id_activity").get("value") == "not-a-uuid"
    assert doc.get_element_by_id("id_user").get("value") == "mem"


def test_an_end_before_the_start_is_refused(staff, db):
    response = staff.get(reverse("portal:connections"), {"since": "2026-02-02", "until": "2026-02-01"})

    assert response.context["form"].errors["until"] == ["The end is before the start."]


def test_a_failed_connection_is_explained_with_its_remedy(staff, estate):
    failed = estate["failed"][0]
    entry = describe(failed.error_code)

    text = staff.get(reverse("portal:connection-detail", args=[failed.activity_id])).content.decode()

    assert entry.message in text and entry.remedy in text
    assert "The administrator" in text  # fix_by, in words
    assert "Placement (step 7: the broker picks a session host)" in text


def test_an_unknown_error_code_is_still_shown(staff, estate):
    failed = estate["failed"][0]
    type(failed).objects.filter(pk=failed.pk).update(error_code="SomethingFromTheFuture")

    response = staff.get(reverse("portal:connection-detail", args=[failed.activity_id]))

    assert response.status_code == 200
    assert "SomethingFromTheFuture" in response.content.decode()
    assert "This code is not in the current table." in response.content.decode()


def test_the_timeline_has_each_checkpoint_with_durations_and_bytes(staff, estate):
    ok = estate["ok"]

    response = staff.get(reverse("portal:connection-detail", args=[ok.activity_id]))

    steps = html.fromstring(response.content).xpath("//ol[@class='timeline']/li")
    reached = [s.get("class") for s in steps]
    assert reached == ["reached", "reached", "reached", "missed", "missed", "reached", "reached"]
    assert "+40 ms from the request" in steps[1].text_content()
    assert "50 ms after the previous step" in steps[2].text_content()
    assert "1.9 s after the previous step" in steps[5].text_content()
    text = response.content.decode()
    assert "9.4\xa0MB" in text and "9876543 bytes" in text and "Client closed the connection" in text
    assert "59 min 58 s" in text  # relay start to end


def test_an_unknown_activity_gets_a_clear_page(staff, db):
    response = staff.get(reverse("portal:connection-detail", args=["3f2b6c1e-8d4a-4f7e-9c1b-2a5d6e7f8a9b"]))

    assert response.status_code == 404
    assert "This connection record no longer exists" in response.content.decode()


def test_the_connection_list_pages_through_many_records(staff, estate):
    Connection.objects.bulk_create([Connection(username=f"bulk{i}") for i in range(60)])

    first = staff.get(reverse("portal:connections"), {"user": "bulk"})
    second = staff.get(reverse("portal:connections"), {"user": "bulk", "page": "2"})

    assert (len(listed(first)), len(listed(second))) == (50, 10)
    assert "Page 1 of 2" in first.content.decode()
    assert 'href="?user=bulk&amp;page=2"' in first.content.decode()
