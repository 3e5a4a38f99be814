"""The agent keeps the session host's RDP certificate from our CA, against real xrdp: it installs one at
start (xrdp presents it from the next connection on, as the agent's own probe confirms), the control plane
records the fingerprint, and with short lifetimes it renews before expiry, twice, on the one host channel
it opened at start (no reconnect, the host never leaves Available).

The plane's host-rdp certificates live 20 s (tests/e2e/short_certificates.py): the agent renews two thirds
of the way from installation to expiry, about every 13 s.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from hostagent.agent.rdpcert import presented_certificate
from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.processes import REPO_ROOT, ControlPlane
from testbed.xrdp import XrdpServer
from tests.e2e.short_certificates import HOST_RDP_LIFETIME_SECONDS
from tests.hostagent.test_processes import agent_env, query

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT = 60.0  # an upper bound for a loaded machine, not a speed assertion


def leaf_sha256(path: Path) -> str:
    """The fingerprint of the first certificate in a PEM chain file ("" while there is none)."""
    try:
        data = path.read_bytes()
        return x509.load_pem_x509_certificates(data)[0].fingerprint(hashes.SHA256()).hex() if data else ""
    except (FileNotFoundError, ValueError):
        return ""


def recorded(plane: ControlPlane, name: str) -> tuple[str, int | None]:
    """(the fingerprint the host's listener presents, the verified certificate's id) as the plane has them."""
    rows = query(plane, "SELECT rdp_certificate_sha256, rdp_certificate_id FROM broker_sessionhost WHERE name = ?",
                 name)
    return rows[0] if rows else ("", None)


def wait_until(condition, what: str, *logs: Path):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    details = "\n".join(f"--- {path.name}\n{read_log(path)[-5000:]}" for path in logs)
    raise AssertionError(f"timed out waiting for {what}\n{details}")


@pytest.fixture
def short_lived_plane(tmp_path):
    plane = ControlPlane(data_dir=tmp_path / "plane", extra_env={
        "DJANGO_SETTINGS_MODULE": "tests.e2e.short_certificates", "WVD_HEARTBEAT_INTERVAL": "1"})
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def test_the_agent_installs_and_renews_xrdps_certificate_on_one_channel(short_lived_plane: ControlPlane,
                                                                        xrdp_server: XrdpServer, tmp_path):
    plane = short_lived_plane
    token = plane.manage("shell", "-c", (
        "from broker.models import HostPool\n"
        "print(HostPool.objects.create(name='cert-pool').issue_registration_token()[0])\n"
    )).stdout.split()[-1]
    state_dir, agent_log = tmp_path / "agent", plane.log_dir / "agent.log"
    registered = subprocess.run(
        [sys.executable, "-m", "hostagent.agent", "register", "--server", plane.base_url, "--token", token,
         "--name", "cert-host", "--state-dir", str(state_dir), "--ca-file", str(plane.ca_file)],
        env=agent_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert registered.returncode == 0, registered.stderr
    agent = start_logged(
        [sys.executable, "-m", "hostagent.agent", "run", "--state-dir", str(state_dir),
         "--rdp-target", xrdp_server.address, "--rdp-cert", str(xrdp_server.rdp_cert_path),
         "--rdp-key", str(xrdp_server.rdp_key_path), "--rdp-reload", f"touch {tmp_path / 'reloaded'}",
         "--heartbeat-interval", "1", "--disk-min-free-percent", "0.01"],
        agent_log, env=agent_env(), cwd=REPO_ROOT,
    )
    logs = (agent_log, plane.log_dir / "serve.log")
    try:
        seen: list[str] = []
        for _ in range(3):  # the first certificate, then two renewals
            def next_certificate_recorded() -> str:
                current = leaf_sha256(xrdp_server.rdp_cert_path)
                fingerprint, certificate_id = recorded(plane, "cert-host")
                if current and current not in seen and fingerprint == current and certificate_id:
                    return current
                return ""

            seen.append(wait_until(next_certificate_recorded, f"certificate #{len(seen) + 1} recorded", *logs))

        # What xrdp presents to a client now is the newest: the agent's report is no hope but a reading.
        presented, problem = asyncio.run(presented_certificate(xrdp_server.host, xrdp_server.port))
        assert problem == "" and presented in (seen[-1], leaf_sha256(xrdp_server.rdp_cert_path))
        assert (tmp_path / "reloaded").exists()
        # Chain order as RDP servers want it: leaf, then our CA.
        chain = x509.load_pem_x509_certificates(xrdp_server.rdp_cert_path.read_bytes())
        assert chain[1] == x509.load_pem_x509_certificate(plane.get("/ca.pem")[2])
        lifetime = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
        assert lifetime.total_seconds() <= HOST_RDP_LIFETIME_SECONDS + 5 * 60  # our 5-minute backdating included

        # One channel all along: the agent came online once and the host was never Unavailable since.
        assert read_log(agent_log).count("online as cert-host") == 1, read_log(agent_log)
        statuses = query(plane, "SELECT c.new_status FROM broker_sessionhoststatuschange c JOIN broker_sessionhost h "
                                "ON h.id = c.session_host_id WHERE h.name = ? ORDER BY c.id", "cert-host")
        assert [status for (status,) in statuses] == ["available"], statuses
        # The certificates renewed are revoked once the host presents their successors.
        revoked = query(plane, "SELECT fingerprint_sha256 FROM wvdportal_certificate WHERE purpose = 'host-rdp' "
                               "AND revoked_at IS NOT NULL")
        assert {fingerprint for (fingerprint,) in revoked} >= set(seen[:-1])
    finally:
        stop_group(agent, grace=5)
