"""The xrdp + FreeRDP test bed works: a real login ends with exit 12, a wrong password never does."""
from __future__ import annotations

import os
import socket

import pytest

from testbed.xrdp import (
    EXIT_LOGOFF_BY_USER,
    INSTALL_HINT,
    XRDP_CONNECTED_OK,
    XRDP_LOGIN_FAILED,
    XRDP_LOGIN_OK,
    TestBedError,
    refuse_if_port_taken,
    run_xfreerdp,
    set_ini_value,
    tools_available,
)


@pytest.mark.e2e
def test_a_valid_login_runs_a_session_until_the_server_logs_the_user_off(xrdp_server, xvfb):
    seen = len(xrdp_server.log_text())

    exit_code, output = run_xfreerdp(
        [f"/v:{xrdp_server.address}", f"/u:{xrdp_server.user}", f"/p:{xrdp_server.password}",
         "/cert:ignore", "/size:800x600"],
        timeout=20,
    )

    assert exit_code == EXIT_LOGOFF_BY_USER, output
    new_log = xrdp_server.log_text()[seen:]
    assert f"{XRDP_LOGIN_OK} {xrdp_server.user}" in new_log
    assert XRDP_CONNECTED_OK in new_log


@pytest.mark.e2e
def test_a_wrong_password_never_gets_a_session(xrdp_server, xvfb):
    seen = len(xrdp_server.log_text())

    # The client stays in xrdp's login-failed dialog until `timeout` interrupts it.
    exit_code, output = run_xfreerdp(
        [f"/v:{xrdp_server.address}", f"/u:{xrdp_server.user}", f"/p:not-{xrdp_server.password}",
         "/cert:ignore", "/size:800x600"],
        timeout=8,
    )

    assert exit_code != EXIT_LOGOFF_BY_USER, output
    new_log = xrdp_server.log_text()[seen:]
    assert f"{XRDP_LOGIN_FAILED} {xrdp_server.user}" in new_log
    assert XRDP_LOGIN_OK not in new_log


def test_tools_available_names_what_is_missing_and_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: none of the tools can be found

    ok, reason = tools_available()

    assert not ok
    for tool in ("xrdp", "xrdp-sesman", "Xvnc", "xfreerdp", "Xvfb"):
        assert tool in reason
    assert INSTALL_HINT in reason


def test_it_refuses_a_port_someone_else_listens_on_and_names_them():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]

        with pytest.raises(TestBedError) as refused:
            refuse_if_port_taken(port, "xrdp-sesman")

    assert f"pid {os.getpid()}" in str(refused.value)
    assert str(port) in str(refused.value)


def test_set_ini_value_changes_one_section_and_keeps_the_rest():
    text = "; comment\n[Globals]\nport=3389\nfork=true\n[Xvnc]\nport=-1\nparam=a\nparam=b\n"

    edited = set_ini_value(text, "Globals", "port", "tcp://127.0.0.1:4000")
    edited = set_ini_value(edited, "Xvnc", "ip", "127.0.0.1")

    assert edited == (
        "; comment\n[Globals]\nport=tcp://127.0.0.1:4000\nfork=true\n"
        "[Xvnc]\nip=127.0.0.1\nport=-1\nparam=a\nparam=b\n"
    )
