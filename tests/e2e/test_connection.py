"""Steps 1-12 end to end with real parts: a stock FreeRDP 2.11 client opens the .rdp file our feed served,
reaches our RD Gateway over TLS, the broker orders a real agent process to dial the same instance, and
RDP runs end to end to xrdp (the estate is built in tests/e2e/estate.py).
"""
from __future__ import annotations

import json
import logging
import time

import pytest

from tests.e2e.estate import CHECKPOINTS, Estate, estate, tampered  # noqa: F401  (estate is a fixture)
from wire import rdpfile

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
log = logging.getLogger(__name__)


def test_a_stock_client_reaches_xrdp_through_the_gateway(estate: Estate, tmp_path):
    rdp = tmp_path / "alice-desktop.rdp"
    text = estate.download_rdp(rdp)
    assert "gatewayusagemethod:i:1" in text and "full address:s:e2e-pool" in text

    code, output = estate.connect(rdp)

    assert code == 12, output
    assert "login successful for user" in estate.xrdp.log_text()
    connection = estate.last_connection()
    log.info("the connection as the API returns it: %s", json.dumps(connection, indent=2))
    assert connection["state"] == "ended", connection
    assert connection["username"] == "alice" and connection["error_code"] == ""
    for checkpoint in CHECKPOINTS:
        assert connection[checkpoint], (checkpoint, connection)
    assert connection["bytes_client_to_host"] > 1000 and connection["bytes_host_to_client"] > 1000
    assert connection["end_reason"] in ("host_closed", "client_closed")
    # Both hops were verified (the client refuses what it cannot verify: /cert:deny); the record names the
    # session host's RDP certificate, the one its agent installed from our CA and xrdp presents.
    host = estate.host()
    assert host["rdp_certificate"] and host["rdp_certificate_sha256"] == estate.presented_rdp_certificate()
    assert connection["host_rdp_certificate_sha256"] == host["rdp_certificate_sha256"]


def test_a_tampered_ticket_is_refused_at_tunnel_create_and_not_recorded(estate: Estate, tmp_path):
    rdp = tmp_path / "tampered.rdp"
    rdp.write_bytes(rdpfile.encode(tampered(estate.download_rdp(rdp))))
    recorded = estate.connection_count()
    started = time.monotonic()
    code, output = estate.connect(rdp)
    assert code != 12 and time.monotonic() - started < 10
    assert "E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED" in output, output
    estate.assert_refused_unrecorded(recorded)


def test_a_ticket_used_for_another_pool_is_refused(estate: Estate, tmp_path):
    rdp = tmp_path / "elsewhere.rdp"
    text = estate.download_rdp(rdp).replace("full address:s:e2e-pool", "full address:s:other-pool")
    rdp.write_bytes(rdpfile.encode(text))
    code, output = estate.connect(rdp)
    assert code != 12
    assert "E_PROXY" in output, output
    connection = estate.last_connection()
    assert connection["error_code"] == "ConnectionFailedResourceMismatch", connection


def test_a_pool_whose_only_host_is_drained_refuses_within_a_second(estate: Estate, tmp_path):
    host = estate.host()
    status, _ = estate.api("POST", f"/api/v1/sessionhosts/{host['id']}/drain/", {"allow_new_sessions": False})
    assert status == 200
    try:
        rdp = tmp_path / "drained.rdp"
        estate.download_rdp(rdp)
        started = time.monotonic()
        code, output = estate.connect(rdp)
        elapsed = time.monotonic() - started
    finally:
        estate.api("POST", f"/api/v1/sessionhosts/{host['id']}/drain/", {"allow_new_sessions": True})
    assert code != 12 and "E_PROXY_TS_CONNECTFAILED" in output, output
    connection = estate.last_connection()
    assert connection["error_code"] == "ConnectionFailedNoHealthyRdshAvailable", connection
    # The client's own start-up and TLS take most of this; the refusal itself is immediate.
    assert elapsed < 5, elapsed


def test_a_stopped_agent_makes_the_pool_refuse_connections(estate: Estate, tmp_path):
    estate.stop_agent()  # SIGTERM: the agent says goodbye and the host is Shutdown (a kill: Unavailable)
    estate.wait_host("shutdown", "unavailable", timeout=20)
    rdp = tmp_path / "no-agent.rdp"
    estate.download_rdp(rdp)
    code, output = estate.connect(rdp)
    assert code != 12 and "E_PROXY_TS_CONNECTFAILED" in output, output
    assert estate.last_connection()["error_code"] == "ConnectionFailedNoHealthyRdshAvailable"
    # And it comes back when the agent does.
    estate.start_agent()
    estate.wait_host("available")
