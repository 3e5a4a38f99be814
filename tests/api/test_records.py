"""Records the system writes (user sessions, connections, gateway instances, certificates): read-only."""
from __future__ import annotations

import uuid
from datetime import timedelta
from datetime import timezone as dt_timezone
from urllib.parse import quote

import pytest
from django.utils import timezone

from broker.models import Connection

READ_ONLY = [
    ("usersessions", "user_session"),
    ("connections", "connection"),
    ("gatewayinstances", "gateway_instance"),
    ("certificates", "certificate"),
]


@pytest.mark.parametrize(("name", "fixture"), READ_ONLY)
def test_records_cannot_be_written_through_the_api(request, admin_api, name, fixture):
    obj = request.getfixturevalue(fixture)
    assert admin_api.post(f"/api/v1/{name}/", {}).status_code == 405
    assert admin_api.put(f"/api/v1/{name}/{obj.pk}/", {}).status_code == 405
    assert admin_api.patch(f"/api/v1/{name}/{obj.pk}/", {}).status_code == 405
    assert admin_api.delete(f"/api/v1/{name}/{obj.pk}/").status_code == 405


def test_a_user_session_shows_its_host_and_pool(admin_api, user_session):
    body = admin_api.get(f"/api/v1/usersessions/{user_session.pk}/").json()
    assert body["session_host_name"] == "host-1.example.net"
    assert body["host_pool"] == user_session.session_host.host_pool_id
    assert body["username"] == "member"


def test_user_sessions_filter_by_pool(admin_api, user_session, personal_pool):
    assert admin_api.get(f"/api/v1/usersessions/?host_pool={personal_pool.pk}").json()["count"] == 0
    pool = user_session.session_host.host_pool_id
    assert admin_api.get(f"/api/v1/usersessions/?host_pool={pool}").json()["count"] == 1


def test_a_connection_shows_its_checkpoints_and_duration(admin_api, connection):
    start = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(relay_started_at=start, ended_at=start + timedelta(seconds=90))
    body = admin_api.get(f"/api/v1/connections/{connection.pk}/").json()
    assert body["activity_id"] == str(connection.activity_id)
    assert body["duration_seconds"] == 90.0
    assert body["end_reason"] == "client_closed"


@pytest.fixture
def connections(connection, outsider, personal_pool):
    """Three connections: the member's, and two of the outsider's (one failed, one an hour old)."""
    failed = Connection.objects.create(user=outsider, username="outsider", state="failed",
                                       error_code="ConnectionFailedNoHealthyRdshAvailable", host_pool=personal_pool)
    old = Connection.objects.create(user=outsider, username="outsider", state="ended",
                                    created_at=timezone.now() - timedelta(hours=1))
    return {"member": connection, "failed": failed, "old": old}


def _ids(api, query: str) -> set[int]:
    response = api.get(f"/api/v1/connections/?{query}")
    assert response.status_code == 200, response.json()
    return {c["id"] for c in response.json()["results"]}


def test_connections_filter_by_user_and_username(admin_api, connections, outsider):
    assert _ids(admin_api, f"user={outsider.pk}") == {connections["failed"].pk, connections["old"].pk}
    assert _ids(admin_api, "username=MEMBER") == {connections["member"].pk}


def test_connections_filter_by_activity_id(admin_api, connections):
    wanted = connections["failed"]
    assert _ids(admin_api, f"activity_id={wanted.activity_id}") == {wanted.pk}
    assert _ids(admin_api, f"activity_id={uuid.uuid4()}") == set()
    assert admin_api.get("/api/v1/connections/?activity_id=not-a-uuid").status_code == 400


def test_connections_filter_by_error_code_and_state(admin_api, connections):
    assert _ids(admin_api, "error_code=ConnectionFailedNoHealthyRdshAvailable") == {connections["failed"].pk}
    assert _ids(admin_api, "state=failed") == {connections["failed"].pk}
    assert _ids(admin_api, "state=failed&state=ended") == {c.pk for c in connections.values()}


def test_connections_filter_by_transport(admin_api, connections):
    Connection.objects.filter(pk=connections["failed"].pk).update(transport="rdcleanpath")
    assert _ids(admin_api, "transport=rdcleanpath") == {connections["failed"].pk}
    assert admin_api.get(f"/api/v1/connections/{connections['failed'].pk}/").json()["transport"] == "rdcleanpath"
    assert admin_api.get("/api/v1/connections/?transport=carrier-pigeon").status_code == 400


def test_connections_filter_by_pool_and_host(admin_api, connections, personal_pool):
    member = connections["member"]
    assert _ids(admin_api, f"host_pool={personal_pool.pk}") == {connections["failed"].pk}
    assert _ids(admin_api, f"session_host={member.session_host_id}") == {member.pk}


def test_connections_filter_by_creation_time(admin_api, connections):
    half_an_hour_ago = (timezone.now() - timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    recent = _ids(admin_api, f"created_at_after={half_an_hour_ago}")
    assert recent == {connections["member"].pk, connections["failed"].pk}
    assert _ids(admin_api, f"created_at_before={half_an_hour_ago}") == {connections["old"].pk}
    assert admin_api.get("/api/v1/connections/?created_at_after=yesterday").status_code == 400


def test_a_time_filter_compares_a_time_in_any_offset_as_the_same_instant(admin_api, connections):
    # PostgreSQL refuses offsets beyond ±15:59, which Python reads: the filter turns the time into UTC first.
    far_west = dt_timezone(timedelta(hours=-22, minutes=-38))
    half_an_hour_ago = (timezone.now() - timedelta(minutes=30)).astimezone(far_west)
    assert half_an_hour_ago.isoformat().endswith("-22:38")
    recent = _ids(admin_api, "created_at_after=" + quote(half_an_hour_ago.isoformat()))
    assert recent == {connections["member"].pk, connections["failed"].pk}


TIME_FILTERS = ["connections/?created_at_after", "connections/?created_at_before",
                "sessionhosts/?last_heartbeat_at_after", "gatewayinstances/?last_seen_at_before",
                "certificates/?not_after_after"]


@pytest.mark.parametrize("time_filter", TIME_FILTERS)
def test_every_time_filter_takes_the_offsets_python_reads(admin_api, time_filter):
    # Found by tests/api/test_schemathesis.py on PostgreSQL: "time zone displacement out of range" was a 500.
    assert admin_api.get(f"/api/v1/{time_filter}=" + quote("2026-01-01T00:00:00+23:59")).status_code == 200


@pytest.mark.parametrize("time_filter", TIME_FILTERS)
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_with_no_utc_form_is_a_400(admin_api, time_filter, value):
    # Found by tests/api/test_schemathesis.py on SQLite: turning these into UTC overflowed, a 500.
    response = admin_api.get(f"/api/v1/{time_filter}=" + quote(value))
    assert response.status_code == 400
    assert "between the years 1 and 9999 in UTC" in str(response.json())


def test_connections_are_newest_first_and_searchable(admin_api, connections):
    results = admin_api.get("/api/v1/connections/").json()["results"]
    assert results[-1]["id"] == connections["old"].pk
    assert _ids(admin_api, "search=NoHealthyRdsh") == {connections["failed"].pk}


def test_gateway_instances_filter_by_region(admin_api, gateway_instance):
    assert admin_api.get("/api/v1/gatewayinstances/?region=eu").json()["count"] == 1
    assert admin_api.get("/api/v1/gatewayinstances/?region=us").json()["count"] == 0


def test_certificates_show_validity_and_filter_by_purpose_and_revocation(admin_api, certificate):
    body = admin_api.get(f"/api/v1/certificates/{certificate.pk}/").json()
    assert body["is_valid_now"] is True
    assert body["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert admin_api.get("/api/v1/certificates/?purpose=host-agent").json()["count"] == 1
    assert admin_api.get("/api/v1/certificates/?purpose=gateway-tls").json()["count"] == 0
    assert admin_api.get("/api/v1/certificates/?revoked=true").json()["count"] == 0
    certificate.revoked_at = timezone.now()
    certificate.save()
    assert admin_api.get("/api/v1/certificates/?revoked=true").json()["count"] == 1
    assert admin_api.get(f"/api/v1/certificates/{certificate.pk}/").json()["is_valid_now"] is False
