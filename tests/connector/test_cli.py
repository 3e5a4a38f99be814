"""``python -m gateway.connector`` as a user runs it: clear refusals with exit code 2, and no Django."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.connector.__main__ import UsageError, client_command, default_client, parse_listen
from testbed.processes import REPO_ROOT

TIMEOUT = 60  # an upper bound for a loaded machine, not a speed assertion


def connector(*args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run([sys.executable, "-m", "gateway.connector", *args], cwd=REPO_ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)


def ticket_expiring_at(epoch: int) -> str:
    """A connection ticket's shape with this expiry (the connector reads the payload, never the signature)."""
    payload = base64.urlsafe_b64encode(json.dumps({"j": "x" * 22, "i": epoch - 60, "e": epoch, "u": 1, "n": "alice",
                                                   "g": 1, "r": "dag-a", "h": 1, "p": "pool-a"}).encode())
    return f"wct1.{payload.rstrip(b'=').decode()}.{'s' * 43}"


def rdp_file(tmp_path: Path, ticket: str | None, name: str = "desktop.rdp") -> Path:
    lines = ["full address:s:pool-a", "gatewayhostname:s:127.0.0.1:9", "gatewayusagemethod:i:1"]
    if ticket is not None:
        lines.append(f"gatewayaccesstoken:s:{ticket}")
    path = tmp_path / name
    path.write_bytes(b"\xff\xfe" + "\r\n".join(lines).encode("utf-16-le"))
    return path


def test_it_refuses_an_expired_ticket_with_exit_code_2(tmp_path):
    result = connector(str(rdp_file(tmp_path, ticket_expiring_at(int(time.time()) - 3600))))
    assert result.returncode == 2
    assert "connection ticket expired at" in result.stderr and "refresh your resources" in result.stderr


def test_it_refuses_a_file_without_a_ticket_with_exit_code_2(tmp_path):
    result = connector(str(rdp_file(tmp_path, None)))
    assert result.returncode == 2 and "carries no connection ticket" in result.stderr


def test_it_refuses_a_missing_file_with_exit_code_2(tmp_path):
    result = connector(str(tmp_path / "nothing.rdp"))
    assert result.returncode == 2 and "cannot read" in result.stderr


@pytest.mark.parametrize("args, complaint", [
    (["--", "/u:alice"], "only used with --launch"),
    (["--client", "xfreerdp"], "--client is only used with --launch"),
    (["--launch", "--client", "no-such-rdp-client-here"], "cannot launch no-such-rdp-client-here"),
    (["--ca-file", "/nonexistent/ca.pem"], "not a readable PEM certificate"),
    (["--listen", "localhost"], "expected HOST:PORT"),
])
def test_unusable_options_are_refused_with_exit_code_2(tmp_path, args, complaint):
    result = connector(str(rdp_file(tmp_path, ticket_expiring_at(int(time.time()) + 3600))), *args)
    assert result.returncode == 2 and complaint in result.stderr, result.stderr


def test_there_is_no_option_to_skip_the_certificate_check(tmp_path):
    result = connector(str(rdp_file(tmp_path, "t")), "--insecure")
    assert result.returncode == 2 and "unrecognized arguments: --insecure" in result.stderr


def test_the_connector_imports_no_django():
    probe = ("import sys, gateway.connector.__main__, gateway.connector.tunnel, gateway.connector.rdpfile; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'channels', 'rest_framework'}))")
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_launch_points_the_platforms_client_at_the_local_port():
    assert default_client("win32") == "mstsc" and default_client("linux") == "xfreerdp"
    assert client_command("xfreerdp", "127.0.0.1", 3390, ["/u:alice"]) == ["xfreerdp", "/v:127.0.0.1:3390", "/u:alice"]
    assert client_command("mstsc", "0.0.0.0", 3390, []) == ["mstsc", "/v:127.0.0.1:3390"]
    assert client_command("xfreerdp", "::1", 3390, []) == ["xfreerdp", "/v:[::1]:3390"]


@pytest.mark.parametrize("value, expected", [("127.0.0.1:3390", ("127.0.0.1", 3390)),
                                             ("[::1]:0", ("::1", 0)), ("0.0.0.0:3390", ("0.0.0.0", 3390))])
def test_listen_addresses(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["3390", "host:", ":3390", "host:99999"])
def test_bad_listen_addresses(value):
    with pytest.raises(UsageError):
        parse_listen(value)
