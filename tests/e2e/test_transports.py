"""Every client generation over every transport it supports, end to end with the real stack of
test_connection.py (serve, a real agent, xrdp), with the control plane's CA trusted and no client told to
ignore a certificate: both hops are verified (the gateway's certificate, then the session host's inside
the tunnel, checked against the `full address`).

* FreeRDP 2.11: the feed's .rdp as is (RD Gateway over WebSocket, test_connection.py), the legacy HTTP
  pair (``/gt:http,no-websockets``), and through our connector (raw WebSocket, ``wst``);
* FreeRDP 3.10: the .rdp as is, ``/gateway:type:http,no-websockets``, the raw WebSocket transport
  (``/gateway:url:wss://…,bearer:<ticket>``), and through the connector.

And each hop's negative case: a gateway reached by a name its certificate does not cover, a session host
presenting a certificate from another CA; the client refuses either.

The FreeRDP 3 positive variants carry the ``freerdp3_matrix`` mark: the database shape changes nothing on
these paths, so CI runs them on one shape only (``WVD_TEST_SKIP=freerdp3_matrix``, .ci/run). The refusals
run on both shapes (the broker's verdict travels differently there).
"""
from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.ports import free_port
from testbed.processes import REPO_ROOT
from testbed.xrdp import (
    EXIT_LOGOFF_BY_USER,
    FREERDP2,
    FREERDP3,
    XRDP_LOGIN_OK,
    issue_certificate,
    self_signed_certificate,
    trust_ca,
)

# The estate (control plane, users, pools, a registered agent) is test_connection.py's, built the same
# way for this module.
from tests.e2e.estate import CHECKPOINTS, POOL_NAME, Estate, estate, tampered  # noqa: F401
from tests.e2e.fixtures import needs_freerdp3
from wire import rdpfile

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
log = logging.getLogger(__name__)

CONNECTOR_START_TIMEOUT = 30  # an upper bound for a loaded machine, not a speed assertion
SETTLE_TIMEOUT = 15  # the same


def skip_in_ci_once(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(name in os.environ.get("WVD_TEST_SKIP", "").split(","),
                              reason=f"WVD_TEST_SKIP={name}: CI runs these on the other shape")


FREERDP3_MATRIX = skip_in_ci_once("freerdp3_matrix")


def wst_url_option(rdp_text: str) -> str:
    """FreeRDP 3's raw WebSocket transport pointed at the file's gateway with the file's ticket
    (no .rdp key sets either: PROTOCOLS.md §7)."""
    gateway = re.search(r"^gatewayhostname:s:(\S+)", rdp_text, re.MULTILINE).group(1)
    ticket = re.search(r"^gatewayaccesstoken:s:(\S+)", rdp_text, re.MULTILINE).group(1)
    return f"/gateway:url:wss://{gateway}/remoteDesktopGateway/,bearer:{ticket}"


@dataclass(frozen=True)
class Way:
    """A client generation and the gateway transport it is told to use."""

    client: str
    transport: str  # "rdg-websocket" (the .rdp as is), "rdg-http" (the legacy pair) or "wst"

    def options(self, rdp_text: str) -> list[str]:
        if self.transport == "rdg-http":
            return ["/gt:http,no-websockets" if self.client == FREERDP2 else "/gateway:type:http,no-websockets"]
        if self.transport == "wst":
            return [wst_url_option(rdp_text)]
        return []

    # What serve logs for each transport, so a test can tell the client used the one it was told to.
    def log_line(self) -> str | None:
        return {"rdg-http": "legacy RD Gateway pair", "wst": "raw WebSocket upgraded"}.get(self.transport)


WAYS = [
    pytest.param(Way(FREERDP2, "rdg-http"), id="freerdp2-legacy-http"),
    pytest.param(Way(FREERDP3, "rdg-websocket"), id="freerdp3-rdp-file", marks=[needs_freerdp3, FREERDP3_MATRIX]),
    pytest.param(Way(FREERDP3, "rdg-http"), id="freerdp3-legacy-http", marks=[needs_freerdp3, FREERDP3_MATRIX]),
    pytest.param(Way(FREERDP3, "wst"), id="freerdp3-raw-websocket", marks=[needs_freerdp3, FREERDP3_MATRIX]),
]
GENERATIONS = [pytest.param(FREERDP2, id="freerdp2"), pytest.param(FREERDP3, id="freerdp3", marks=needs_freerdp3)]


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
    # The certificate the client verified on the RDP hop: the one the agent installed from our CA.
    assert connection["host_rdp_certificate_sha256"] == estate.presented_rdp_certificate() != ""
    return connection


def serve_log(estate: Estate) -> str:
    return estate.plane.logs()["serve"]


def drained(estate: Estate):
    """Drain the pool's only host for the duration of a ``with`` block."""
    host = estate.host()

    @contextmanager
    def draining() -> Iterator[None]:
        status, _ = estate.api("POST", f"/api/v1/sessionhosts/{host['id']}/drain/", {"allow_new_sessions": False})
        assert status == 200
        try:
            yield
        finally:
            estate.api("POST", f"/api/v1/sessionhosts/{host['id']}/drain/", {"allow_new_sessions": True})

    return draining()


# --- every client over every gateway transport it has, both hops verified ------------------------


@pytest.mark.parametrize("way", WAYS)
def test_a_stock_client_reaches_xrdp_over_each_transport_with_both_hops_verified(estate: Estate, way: Way, tmp_path):
    rdp = tmp_path / "desktop.rdp"
    text = estate.download_rdp(rdp)
    log_before = len(serve_log(estate))

    code, output = estate.connect(rdp, *way.options(text), client=way.client)

    assert code == EXIT_LOGOFF_BY_USER, output
    if way.log_line() is not None:
        assert way.log_line() in serve_log(estate)[log_before:]  # the transport asked for was used
    assert_a_complete_connection(estate)


@pytest.mark.parametrize("client", GENERATIONS)
def test_a_tampered_ticket_is_refused_over_the_legacy_transport_and_not_recorded(estate: Estate, client, tmp_path):
    rdp = tmp_path / "legacy-tampered.rdp"
    text = tampered(estate.download_rdp(rdp))
    rdp.write_bytes(rdpfile.encode(text))
    recorded = estate.connection_count()

    code, output = estate.connect(rdp, *Way(client, "rdg-http").options(text), client=client)

    assert code != EXIT_LOGOFF_BY_USER
    assert "E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED" in output, output
    estate.assert_refused_unrecorded(recorded)


# --- each hop's negative case --------------------------------------------------------------------

CERTIFICATE_REFUSED = "certificate not trusted, aborting."  # both generations, libfreerdp/crypto/tls.c


class TcpForwarder:
    """Accepts on ``listen`` and pipes each connection to ``target``: the gateway under another address."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.address = "%s:%d" % self.server.getsockname()[:2]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize("client", GENERATIONS)
def test_a_client_refuses_a_gateway_reached_by_a_name_its_certificate_does_not_cover(estate: Estate, client, tmp_path):
    # 127.0.0.2 reaches the same gateway, but the gateway's certificate names 127.0.0.1 and localhost only.
    forwarder = TcpForwarder(("127.0.0.2", 0), ("127.0.0.1", estate.plane.gateway_port))
    try:
        rdp = tmp_path / "elsewhere.rdp"
        text = re.sub(r"^gatewayhostname:s:\S+", f"gatewayhostname:s:{forwarder.address}",
                      estate.download_rdp(rdp), flags=re.MULTILINE)
        rdp.write_bytes(rdpfile.encode(text))
        recorded, xrdp_seen = estate.connection_count(), len(estate.xrdp.log_text())

        code, output = estate.connect(rdp, client=client)
    finally:
        forwarder.close()

    assert forwarder.accepted >= 1  # the client did reach the gateway: the refusal is its certificate check
    assert code != EXIT_LOGOFF_BY_USER, output
    assert "CERTIFICATE NAME MISMATCH" in output and CERTIFICATE_REFUSED in output, output
    assert estate.connection_count() == recorded  # the ticket never left the client
    assert XRDP_LOGIN_OK not in estate.xrdp.log_text()[xrdp_seen:]


@pytest.fixture
def host_with_a_foreign_certificate(estate: Estate) -> Iterator[None]:
    """xrdp presents a certificate for the pool's name, issued by a CA that is not ours; afterwards the pair
    the agent installed is put back."""
    agents = estate.xrdp.rdp_cert_path.read_bytes(), estate.xrdp.rdp_key_path.read_bytes()
    ca_cert, ca_key = self_signed_certificate("Some Other Root CA", ca=True)
    estate.xrdp.install_rdp_certificate(*issue_certificate(ca_cert, ca_key, POOL_NAME))
    try:
        yield
    finally:
        estate.xrdp.install_rdp_certificate(*agents)


@pytest.mark.parametrize("client", GENERATIONS)
def test_a_client_refuses_a_session_host_whose_certificate_another_ca_issued(
        estate: Estate, host_with_a_foreign_certificate, client, tmp_path):
    rdp = tmp_path / "foreign-host.rdp"
    estate.download_rdp(rdp)
    xrdp_seen = len(estate.xrdp.log_text())

    code, output = estate.connect(rdp, client=client)

    assert code != EXIT_LOGOFF_BY_USER, output
    assert CERTIFICATE_REFUSED in output and "NAME MISMATCH" not in output, output  # the issuer, not the name
    assert XRDP_LOGIN_OK not in estate.xrdp.log_text()[xrdp_seen:]  # no password reached the host
    connection = settled_connection(estate)
    assert connection["relay_started_at"], connection  # the gateway hop was fine: the host hop refused


# --- the raw WebSocket transport's refusals -------------------------------------------------------


@needs_freerdp3
def test_a_drained_pool_ends_freerdp3_on_the_raw_websocket_within_5_s_with_the_reason(estate: Estate, tmp_path):
    with drained(estate):
        rdp = tmp_path / "drained.rdp"
        text = estate.download_rdp(rdp)
        started = time.monotonic()
        code, output = estate.connect(rdp, wst_url_option(text), client=FREERDP3, timeout=30)
        elapsed = time.monotonic() - started

    log.info("xfreerdp3 ended %.2f s after its start, exit code %d", elapsed, code)
    assert code != EXIT_LOGOFF_BY_USER, output
    assert elapsed < 5, (elapsed, output)  # the issue's bound: it used to hang until killed
    # FreeRDP 3 logs the refusal's reason phrase (then falls back to the .rdp's RD Gateway, which is
    # refused too and recorded as a connection of its own).
    shown = re.search(r"\[reason\] (\S+) activity (\S+)", output)
    assert shown, output
    assert shown.group(1) == "ConnectionFailedNoHealthyRdshAvailable"
    status, recent = estate.api("GET", "/api/v1/connections/?ordering=-created_at&limit=2")
    assert status == 200, recent
    refused = [c for c in recent["results"] if c["activity_id"] == shown.group(2)]
    assert refused and refused[0]["error_code"] == "ConnectionFailedNoHealthyRdshAvailable", recent


# --- the connector over the raw WebSocket transport ----------------------------------------------


def connector_command(rdp: Path, ca_file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.connector", str(rdp), "--ca-file", str(ca_file), *args]


@contextmanager
def running_connector(estate: Estate, rdp: Path) -> Iterator[tuple[int, Path]]:
    """The connector listening on a free loopback port: (port, its log)."""
    port = free_port("127.0.0.1")
    log = estate.plane.log_dir / f"connector-{port}.log"
    estate.logs[f"connector-{port}"] = log
    process = start_logged(connector_command(rdp, estate.ca_file, "--listen", f"127.0.0.1:{port}"), log,
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


# The client dials 127.0.0.1, so it is told which name the session host's certificate must carry: the
# file's `full address`, the pool's name (/cert:name applies to the RDP hop only, libfreerdp/crypto/tls.c;
# FreeRDP keeps only the last /cert: option, so `deny` joins it: /cert:name:e2e-pool,deny).
HOST_NAME_OPTION = f"/cert:name:{POOL_NAME}"


@pytest.mark.parametrize("client", [pytest.param(FREERDP2, id="freerdp2"),
                                    pytest.param(FREERDP3, id="freerdp3", marks=[needs_freerdp3, FREERDP3_MATRIX])])
def test_a_client_without_gateway_support_reaches_xrdp_through_the_connector(estate: Estate, client, tmp_path):
    rdp = tmp_path / "connector.rdp"
    estate.download_rdp(rdp)

    with running_connector(estate, rdp) as (port, _log):
        code, output = estate.connect(f"/v:127.0.0.1:{port}", HOST_NAME_OPTION, client=client)

    assert code == EXIT_LOGOFF_BY_USER, output
    assert_a_complete_connection(estate)


def test_the_connector_launches_the_client_and_exits_with_its_code(estate: Estate, tmp_path):
    rdp = tmp_path / "launch.rdp"
    estate.download_rdp(rdp)
    with tempfile.TemporaryDirectory(prefix="wvd-freerdp-home-") as home:
        trust_ca(Path(home), estate.ca_file)
        env = {**os.environ, "HOME": home}
        env.pop("XDG_CONFIG_HOME", None)
        completed = subprocess.run(
            ["timeout", "-s", "INT", "-k", "5", "40",
             *connector_command(rdp, estate.ca_file, "--launch", "--", f"/u:{estate.xrdp.user}",
                                f"/p:{estate.xrdp.password}", f"{HOST_NAME_OPTION},deny", "/size:800x600")],
            env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=70,
        )

    assert completed.returncode == EXIT_LOGOFF_BY_USER, completed.stdout + completed.stderr
    assert_a_complete_connection(estate)


def test_the_connector_shows_why_the_gateway_refused(estate: Estate, tmp_path):
    with drained(estate):
        rdp = tmp_path / "drained.rdp"
        estate.download_rdp(rdp)
        with running_connector(estate, rdp) as (port, log):
            code, output = estate.connect(f"/v:127.0.0.1:{port}", HOST_NAME_OPTION)
            text = read_log(log)

    assert code != EXIT_LOGOFF_BY_USER, output
    connection = settled_connection(estate)
    assert connection["error_code"] == "ConnectionFailedNoHealthyRdshAvailable", connection
    assert "ConnectionFailedNoHealthyRdshAvailable" in text and connection["activity_id"] in text, text
    assert "No session host is available" in text, text
