"""A directory user, end to end, with real processes and no xrdp: a control plane (`serve`) configured with
WVD_LDAP_* against the test's slapd, a real agent bridging to bench/target.py as its "RDP server", and the
project's connector (``python -m gateway.connector FILE.rdp``) as the client.

The user signs in with their directory password, downloads the .rdp file of the desktop assigned to their
directory group, and connects: bytes go through the gateway and the agent and come back exact. Then the
directory takes them out of the group; after the sync task has run, the same file's next connection is
refused with its documented code, and the refusal is recorded. tests/e2e/test_directory_user.py tells the
same story with a stock FreeRDP client against xrdp.
"""
from __future__ import annotations

import os
import secrets
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.harness import EMBEDDED, Estate, start_target
from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.ports import free_port, is_listening
from testbed.processes import REPO_ROOT
from tests.directory.conftest import PASSWORD
from tests.directory.plane import mirrored_group_id, sync_directory
from wire.errors import ErrorCode

pytestmark = pytest.mark.slow
WAIT = 60.0  # an upper bound for a loaded 2-core machine, not a speed assertion


@pytest.fixture
def target(tmp_path):
    child, port = start_target(tmp_path)
    yield port
    child.stop()


@pytest.fixture
def estate(ldap_server, target):
    with Estate(shape=EMBEDDED, rdp_target=f"127.0.0.1:{target}",
                extra_env=ldap_server.control_plane_environment()) as running:
        yield running


class Connector:
    """``python -m gateway.connector FILE.rdp`` on a free loopback port, as a user runs it (no Django)."""

    def __init__(self, rdp_path: Path, ca_file: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
        self.process = start_logged([sys.executable, "-m", "gateway.connector", str(rdp_path), "--listen",
                                     f"127.0.0.1:{self.port}", "--ca-file", str(ca_file)], log, env=env, cwd=REPO_ROOT)
        deadline = time.monotonic() + WAIT
        while not is_listening(self.port):
            assert self.process.poll() is None and time.monotonic() < deadline, read_log(log)
            time.sleep(0.05)

    def echo(self, payload: bytes) -> bytes:
        """One connection through the tunnel: bench/target.py echoes what follows its ECHO line. Returns what
        came back before the tunnel closed or all of it arrived."""
        received = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as sock:
            sock.sendall(b"ECHO\n" + payload)
            while len(received) < len(payload):
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
        return received

    def stop(self) -> None:
        stop_group(self.process, grace=5)


def sign_in(estate: Estate, username: str) -> str:
    status, body = estate.plane.call("POST", "/api/v1/auth/token/", {"username": username, "password": PASSWORD})
    assert status == 201, body
    return body["token"]


def download_rdp(estate: Estate, token: str, path: Path) -> Path:
    status, feed = estate.plane.call("GET", "/api/v1/feed/", token=token)
    assert status == 200 and [resource["id"] for resource in feed] == ["bench-desktops/desktop"], feed
    request = urllib.request.Request(feed[0]["rdp_url"], headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30, context=estate.plane.ssl_context()) as response:
        path.write_bytes(response.read())
    return path


def test_a_directory_user_connects_and_after_leaving_the_group_is_refused(ldap_server, estate, tmp_path):
    suffix = secrets.token_hex(3)
    name, group = f"e2e{suffix}", f"desktop-users-{suffix}"
    ldap_server.add_user(name, PASSWORD)
    ldap_server.add_group(group, [name])
    sign_in(estate, name)  # the first sign-in makes the account and mirrors the group
    status, groups = estate.plane.call("GET", "/api/v1/applicationgroups/?name=bench-desktops",
                                       token=estate.admin_token)
    assert status == 200
    status, assignment = estate.plane.call("POST", "/api/v1/assignments/", {
        "application_group": groups["results"][0]["id"], "group": mirrored_group_id(estate.plane, group),
    }, estate.admin_token)
    assert status == 201, assignment
    rdp_path = download_rdp(estate, sign_in(estate, name), tmp_path / "desktop.rdp")
    connector = Connector(rdp_path, estate.ca_file, tmp_path / "connector.log")
    try:
        payload = secrets.token_bytes(256 * 1024)
        assert connector.echo(payload) == payload, estate.failure_report() + read_log(connector.log)

        ldap_server.remove_member(group, name)
        synced = sync_directory(estate.plane)
        assert synced == {"refreshed": 1, "deactivated": 0, "unavailable": ""}, synced

        assert connector.echo(payload) == b""
    finally:
        connector.stop()

    code = ErrorCode.ConnectionFailedUserNotAuthorized
    assert f"the gateway refused the connection: {code}" in read_log(connector.log)
    status, refused = estate.plane.call("GET", f"/api/v1/connections/?username={name}&error_code={code}",
                                        token=estate.admin_token)
    assert status == 200 and refused["count"] == 1, refused
    assert refused["results"][0]["state"] == "failed"
