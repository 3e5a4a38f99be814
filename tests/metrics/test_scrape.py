"""Each process's /metrics after a few real connections: the series an operator's dashboard reads, with the
values the Connection records and the bytes sent say they must have.

A real control plane (serve; and on the PostgreSQL + Redis shape a Celery worker with a prefork pool of
two, counting in prometheus_client's multiprocess mode), one registered agent whose "RDP server" is
bench/target.py, and FreeRDP 2's RD Gateway client as bench/clients.py speaks it. No xrdp.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import workloads
from bench.clients import GatewayRefused
from bench.harness import EMBEDDED, Estate, redis_shape, start_target

pytestmark = [pytest.mark.slow, pytest.mark.django_db(False), pytest.mark.timeout(240)]

SENT_UP = 300_000  # bytes the client sends to the host (SINK)
SENT_DOWN = 500_000  # bytes the host sends to the client (SOURCE)
TRANSPORT = "rdg-websocket"  # what bench/clients.py's RdgStream speaks


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """An exposition, parsed by prometheus_client's own parser: value by (sample name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scraped: dict, name: str, **labels: str) -> float:
    """The sample's value, 0 when the series is absent."""
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def total(scrapes: list[dict], name: str, **labels: str) -> float:
    """Sum over processes and over the labels not named."""
    wanted = set(labels.items())
    return sum(v for scraped in scrapes for (sample, sample_labels), v in scraped.items()
               if sample == name and wanted <= set(sample_labels))


def outcome_of(record: dict) -> str:
    """What core/metrics.py calls the record's end."""
    if record["state"] == "ended":
        return "lost" if record["end_reason"] == "gateway_shutdown" else "success"
    return "failed" if record["ticket_accepted_at"] else "refused"


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    redis_url = os.environ.get("WVD_REDIS_URL", "").strip()
    shape = redis_shape(redis_url, os.environ.get("WVD_DATABASE_URL", "").strip()) if redis_url else EMBEDDED
    target, port = start_target(tmp_path_factory.mktemp("target"))
    try:
        with Estate(shape, f"127.0.0.1:{port}", extra_env={"WVD_LOG_FORMAT": "json"},
                    plane_options={"metrics": True, "worker_pool": "prefork"}) as running:
            yield running
    finally:
        target.stop()


async def connect_and_move_bytes(estate: Estate) -> dict:
    """Three connections: one sends SENT_UP bytes, one receives SENT_DOWN, one echoes while the serve
    process is scraped (one relay active); then a refusal by placement (every host drained) and one at
    the door (the user's assignment removed)."""
    seen: dict = {}
    stream = await estate.open_session()
    await workloads.client_to_host(stream, SENT_UP, 16384)
    await stream.close()
    stream = await estate.open_session()
    await workloads.host_to_client(stream, SENT_DOWN, 16384)
    await stream.close()
    stream = await estate.open_session()
    await workloads.ping_pong(stream, 3)
    seen["while_open"] = samples(await asyncio.to_thread(estate.plane.scrape, "serve"))
    await stream.close()

    await asyncio.to_thread(estate.allow_new_sessions, False)
    with pytest.raises(GatewayRefused):
        await estate.open_session()
    await asyncio.to_thread(estate.allow_new_sessions, True)
    status, assignments = estate.plane.call("GET", "/api/v1/assignments/", token=estate.admin_token)
    assert status == 200, assignments
    for assignment in assignments["results"]:
        status, _ = estate.plane.call("DELETE", f"/api/v1/assignments/{assignment['id']}/", token=estate.admin_token)
        assert status == 204
    with pytest.raises(GatewayRefused):
        await estate.open_session()
    return seen


def records(estate: Estate) -> list[dict]:
    status, body = estate.plane.call("GET", "/api/v1/connections/?limit=100", token=estate.admin_token)
    assert status == 200, body
    return body["results"]


def scrape_all(estate: Estate) -> dict[str, dict]:
    return {name: samples(estate.plane.scrape(name)) for name in estate.plane.metrics_ports}


def test_each_process_counts_what_the_records_say(estate):
    status, _ = estate.plane.call("POST", "/api/v1/auth/token/", {"username": "bench-user", "password": "wrong"})
    assert status == 401
    seen = asyncio.run(connect_and_move_bytes(estate))

    # Ends are recorded off the loop after each close: wait until every record has ended.
    deadline = time.monotonic() + 30
    found = records(estate)
    while any(record["ended_at"] is None for record in found) and time.monotonic() < deadline:
        time.sleep(0.2)
        found = records(estate)
    assert len(found) == 5 and all(record["ended_at"] for record in found), found
    expected = Counter((outcome_of(r), r["error_code"], r["transport"]) for r in found)
    assert expected[("success", "", TRANSPORT)] == 3
    assert sum(n for (outcome, _, _), n in expected.items() if outcome == "failed") == 1
    assert sum(n for (outcome, _, _), n in expected.items() if outcome == "refused") == 1

    # A count is made after its transaction commits, in whichever process made the transition: poll.
    deadline = time.monotonic() + 15
    while True:
        scraped = scrape_all(estate)
        counted = Counter({(dict(labels)["outcome"], dict(labels)["error_code"], dict(labels)["transport"]): int(v)
                           for per_process in scraped.values() for (name, labels), v in per_process.items()
                           if name == "wvd_connections_total"})
        if counted == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    per_process = list(scraped.values())
    assert counted == expected, (counted, expected)

    serve = scraped["serve"]
    # Relayed bytes: at least what the workloads moved (plus their command lines and the echoes).
    assert value(serve, "wvd_relay_bytes_total", transport=TRANSPORT, direction="client_to_host") >= SENT_UP
    assert value(serve, "wvd_relay_bytes_total", transport=TRANSPORT, direction="host_to_client") >= SENT_DOWN
    assert value(seen["while_open"], "wvd_relays_active", transport=TRANSPORT) == 1
    assert value(serve, "wvd_relays_active", transport=TRANSPORT) == 0
    # Every checkpoint of the three connections whose relay started, each observed once.
    for checkpoint in ("host_selected", "host_notified", "host_connected", "relay_started"):
        assert value(serve, "wvd_connection_setup_seconds_count", checkpoint=checkpoint) == 3, checkpoint
    assert value(serve, "wvd_host_channels_connected") == 1
    assert value(serve, "wvd_host_heartbeat_lag_seconds_count") >= 1
    assert value(serve, "wvd_signin_refusals_total", reason="wrong_credentials", credential="password") == 1
    # Orchestration ran for the three connections and the drained one (the refusal at the door never
    # reached the broker): in the worker's pool children with Redis, eagerly in serve without.
    orchestrations = total(per_process, "wvd_celery_task_seconds_count", task="broker.tasks.orchestrate_connection",
                           state="SUCCESS")
    assert orchestrations == 4
    if estate.plane.uses_redis:
        worker = scraped["worker"]
        assert value(worker, "wvd_celery_task_seconds_count", task="broker.tasks.orchestrate_connection",
                     state="SUCCESS") == 4
        assert total([worker], "wvd_celery_task_queue_seconds_count", task="broker.tasks.orchestrate_connection") == 4
        # Placement's refusal of the drained pool is the worker's transition, counted there.
        drained = [key for key in expected if key[0] == "failed"][0]
        assert value(worker, "wvd_connections_total", outcome="failed", error_code=drained[1],
                     transport=TRANSPORT) == 1


def test_every_log_line_about_a_connection_is_json_with_its_activity_id(estate):
    """Run after the connections above (same plane): each line naming a connection's activity id, in
    every process's log, is a JSON object whose activity_id is that id."""
    found = records(estate)
    assert found, "the connections test runs first"
    logs = estate.plane.logs()
    for record in found:
        activity = record["activity_id"]
        about = [(name, line) for name, text in logs.items() for line in text.splitlines() if activity in line]
        assert about, f"no log line names {activity}"
        for name, line in about:
            parsed = json.loads(line)
            assert parsed.get("activity_id") == activity, (name, line)
    # The worker's own lines about a connection (placement, the connect order) carry it too.
    if estate.plane.uses_redis:
        worker_lines = [json.loads(line) for line in logs["worker"].splitlines() if line.startswith("{")]
        tagged = {line["activity_id"] for line in worker_lines if "activity_id" in line}
        assert tagged >= {r["activity_id"] for r in found if r["ticket_accepted_at"]}


def test_the_web_listener_does_not_serve_metrics(estate):
    status, _, body = estate.plane.get("/metrics")
    assert status == 404
    assert b"wvd_" not in body
