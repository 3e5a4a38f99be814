"""Every kind of client end to end, with the real stack of test_connection.py (serve, a real agent, xrdp):
a stock FreeRDP 2.11 over the legacy RD Gateway HTTP transport (``/gt:http,no-websockets``), and a
client with no gateway support through our connector (``python -m gateway.connector``), which tunnels
raw RDP over the gateway's standard WebSocket transport.

Runs on the embedded default and, when the test process has WVD_DATABASE_URL/WVD_REDIS_URL, on
PostgreSQL + Redis with a separate Celery worker.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.ports import free_port
from testbed.processes import REPO_ROOT
from testbed.xrdp import EXIT_LOGOFF_BY_USER, run_xfreerdp
# The estate (control plane, users, pools, a registered agent) is test_connection.py's, built the same
# way for this module.
from tests.e2e.estate import CHECKPOINTS, Estate, estate, tampered  # noqa: F401
from wire import rdpfile

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LEGACY = "/gt:http,no-websockets"
CONNECTOR_START_TIMEOUT = 30  # an upper bound for a loaded machine, not a speed assertion
SETTLE_TIMEOUT = 15  # the same


def settled_connection(estate: Estate) -> dict:
    """The newest Connection once its end is recorded: the gateway writes it off its loop, and the client
    may exit (the connector closes its side) a moment before that write lands."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        connection = estate.last_connection()
        if connection["ended_at"] or time.monotonic() > deadline:
            return connection
        time.sleep(0.1)


def assert_a_complete_connection(estate: Estate) -> dict:
    connection = settled_connection(estate)
    assert connection["state"] == "ended", connection
    assert connection["username"] == "alice" and connection["error_code"] == ""
    for checkpoint in CHECKPOINTS:
        assert connection[checkpoint], (checkpoint, connection)
    assert connection["bytes_client_to_host"] > 1000 and connection["bytes_host_to_client"] > 1000
    return connection


def serve_log(estate: Estate) -> str:
    return estate.plane.logs()["serve"]


# --- the legacy RD Gateway HTTP transport --------------------------------------------------------


def test_a_stock_client_reaches_xrdp_over_the_legacy_http_transport(estate: Estate, tmp_path):
    rdp = tmp_path / "legacy.rdp"
    estate.download_rdp(rdp)

    code, output = run_xfreerdp([str(rdp), LEGACY, f"/u:{estate.xrdp.user}", f"/p:{estate.xrdp.password}",
                                 "/cert:ignore", "/size:800x600"], timeout=25)

    assert code == EXIT_LOGOFF_BY_USER, output
    assert "legacy RD Gateway pair" in serve_log(estate)  # the two-connection form was used
    assert_a_complete_connection(estate)


def test_a_tampered_ticket_is_refused_over_the_legacy_transport_and_not_recorded(estate: Estate, tmp_path):
    rdp = tmp_path / "legacy-tampered.rdp"
    rdp.write_bytes(rdpfile.encode(tampered(estate.download_rdp(rdp))))
    recorded = estate.connection_count()

    code, output = run_xfreerdp([str(rdp), LEGACY, f"/u:{estate.xrdp.user}", f"/p:{estate.xrdp.password}",
                                 "/cert:ignore"], timeout=25)

    assert code != EXIT_LOGOFF_BY_USER
    assert "E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED" in output, output
    estate.assert_refused_unrecorded(recorded)


# --- the connector over the raw WebSocket transport ----------------------------------------------


@pytest.fixture(scope="module")
def ca_file(estate: Estate, tmp_path_factory) -> Path:
    """The control plane's CA, as a user downloads it from /ca.pem, for the connector's --ca-file."""
    status, _, body = estate.plane.get("/ca.pem")
    assert status == 200
    path = tmp_path_factory.mktemp("ca") / "wvd-ca.pem"
    path.write_bytes(body)
    return path


def connector_command(rdp: Path, ca_file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.connector", str(rdp), "--ca-file", str(ca_file), *args]


@contextmanager
def running_connector(estate: Estate, rdp: Path, ca_file: Path) -> Iterator[tuple[int, Path]]:
    """The connector listening on a free loopback port: (port, its log)."""
    port = free_port("127.0.0.1")
    log = estate.plane.log_dir / f"connector-{port}.log"
    estate.logs[f"connector-{port}"] = log
    process = start_logged(connector_command(rdp, ca_file, "--listen", f"127.0.0.1:{port}"), log,
                           env=os.environ.copy(), cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + CONNECTOR_START_TIMEOUT
        while "listening on" not in read_log(log):
            assert process.poll() is None, read_log(log)
            assert time.monotonic() < deadline, read_log(log)
            time.sleep(0.1)
        yield port, log
    finally:
        stop_group(process, grace=5)


def test_a_client_without_gateway_support_reaches_xrdp_through_the_connector(estate: Estate, ca_file, tmp_path):
    rdp = tmp_path / "connector.rdp"
    estate.download_rdp(rdp)

    with running_connector(estate, rdp, ca_file) as (port, _log):
        code, output = run_xfreerdp([f"/v:127.0.0.1:{port}", f"/u:{estate.xrdp.user}",
                                     f"/p:{estate.xrdp.password}", "/cert:ignore", "/size:800x600"], timeout=25)

    assert code == EXIT_LOGOFF_BY_USER, output
    assert_a_complete_connection(estate)


def test_the_connector_launches_the_client_and_exits_with_its_code(estate: Estate, ca_file, tmp_path):
    rdp = tmp_path / "launch.rdp"
    estate.download_rdp(rdp)
    with tempfile.TemporaryDirectory(prefix="wvd-freerdp-home-") as home:
        env = {**os.environ, "HOME": home}
        env.pop("XDG_CONFIG_HOME", None)
        completed = subprocess.run(
            ["timeout", "-s", "INT", "-k", "5", "40",
             *connector_command(rdp, ca_file, "--launch", "--", f"/u:{estate.xrdp.user}",
                                f"/p:{estate.xrdp.password}", "/cert:ignore", "/size:800x600")],
            env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=70,
        )

    assert completed.returncode == EXIT_LOGOFF_BY_USER, completed.stdout + completed.stderr
    assert_a_complete_connection(estate)


def test_the_connector_shows_why_the_gateway_refused(estate: Estate, ca_file, tmp_path):
    host = estate.host()
    status, _ = estate.api("POST", f"/api/v1/sessionhosts/{host['id']}/drain/", {"allow_new_sessions": False})
    assert status == 200
    try:
        rdp = tmp_path / "drained.rdp"
        estate.download_rdp(rdp)
        with running_connector(estate, rdp, ca_file) as (port, log):
            code, output = run_xfreerdp([f"/v:127.0.0.1:{port}", f"/u:{estate.xrdp.user}",
                                         f"/p:{estate.xrdp.password}", "/cert:ignore"], timeout=25)
            text = read_log(log)
    finally:
        estate.api("POST", f"/api/v1/sessionhosts/{host['id']}/drain/", {"allow_new_sessions": True})

    assert code != EXIT_LOGOFF_BY_USER, output
    connection = settled_connection(estate)
    assert connection["error_code"] == "ConnectionFailedNoHealthyRdshAvailable", connection
    assert "ConnectionFailedNoHealthyRdshAvailable" in text and connection["activity_id"] in text, text
    assert "No session host is available" in text, text
