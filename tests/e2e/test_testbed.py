"""The xrdp + FreeRDP test bed works: a real login ends with exit 12, a wrong password never does, and
xrdp presents the certificate installed at its ``rdp_cert_path``, which both FreeRDP generations verify."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from testbed.xrdp import (
    EXIT_LOGOFF_BY_USER,
    FREERDP2,
    FREERDP3,
    INSTALL_HINT,
    XRDP_CONNECTED_OK,
    XRDP_LOGIN_FAILED,
    XRDP_LOGIN_OK,
    TestBedError,
    freerdp_certificate_store,
    issue_certificate,
    refuse_if_port_taken,
    run_xfreerdp,
    self_signed_certificate,
    set_ini_value,
    tools_available,
    trust_ca,
    with_cert_deny,
)
from tests.e2e.fixtures import needs_freerdp3

BED_NAME = "xrdp-bed"  # the name the bed's certificate carries; clients dial 127.0.0.1 and name it


@pytest.fixture
def bed_ca(xrdp_server, tmp_path) -> Path:
    """A CA of the test's own that issued the certificate xrdp now presents for ``BED_NAME``."""
    ca_cert, ca_key = self_signed_certificate("xrdp bed test CA", ca=True)
    xrdp_server.install_rdp_certificate(*issue_certificate(ca_cert, ca_key, BED_NAME))
    path = tmp_path / "bed-ca.pem"
    path.write_bytes(ca_cert)
    return path


def direct(xrdp_server, password: str) -> list[str]:
    return [f"/v:{xrdp_server.address}", f"/u:{xrdp_server.user}", f"/p:{password}", f"/cert:name:{BED_NAME}",
            "/size:800x600"]


@pytest.mark.e2e
@pytest.mark.parametrize("client", [FREERDP2, pytest.param(FREERDP3, marks=needs_freerdp3)])
def test_a_valid_login_runs_a_session_until_the_server_logs_the_user_off(xrdp_server, xvfb, bed_ca, client):
    seen = len(xrdp_server.log_text())

    exit_code, output = run_xfreerdp(direct(xrdp_server, xrdp_server.password), timeout=20, client=client,
                                     ca_file=bed_ca)

    assert exit_code == EXIT_LOGOFF_BY_USER, output
    new_log = xrdp_server.log_text()[seen:]
    assert f"{XRDP_LOGIN_OK} {xrdp_server.user}" in new_log
    assert XRDP_CONNECTED_OK in new_log


@pytest.mark.e2e
def test_a_wrong_password_never_gets_a_session(xrdp_server, xvfb, bed_ca):
    seen = len(xrdp_server.log_text())

    # The client stays in xrdp's login-failed dialog until `timeout` interrupts it.
    exit_code, output = run_xfreerdp(direct(xrdp_server, f"not-{xrdp_server.password}"), timeout=8, ca_file=bed_ca)

    assert exit_code != EXIT_LOGOFF_BY_USER, output
    new_log = xrdp_server.log_text()[seen:]
    assert f"{XRDP_LOGIN_FAILED} {xrdp_server.user}" in new_log
    assert XRDP_LOGIN_OK not in new_log


@pytest.mark.e2e
@pytest.mark.parametrize("client", [FREERDP2, pytest.param(FREERDP3, marks=needs_freerdp3)])
def test_xrdp_reads_its_certificate_per_connection_and_an_untrusted_one_is_refused(xrdp_server, xvfb, client,
                                                                                   tmp_path):
    ca_cert, ca_key = self_signed_certificate("xrdp bed test CA", ca=True)
    (tmp_path / "ca.pem").write_bytes(ca_cert)
    xrdp_server.install_rdp_certificate(*self_signed_certificate(BED_NAME, (BED_NAME,)))  # not from that CA
    seen = len(xrdp_server.log_text())

    refused, output = run_xfreerdp(direct(xrdp_server, xrdp_server.password), timeout=20, client=client,
                                   ca_file=tmp_path / "ca.pem")

    assert refused != EXIT_LOGOFF_BY_USER, output
    assert XRDP_LOGIN_OK not in xrdp_server.log_text()[seen:]  # the password never left the client
    # The same running xrdp, a certificate from the trusted CA installed: the next connection verifies.
    xrdp_server.install_rdp_certificate(*issue_certificate(ca_cert, ca_key, BED_NAME))
    accepted, output = run_xfreerdp(direct(xrdp_server, xrdp_server.password), timeout=20, client=client,
                                    ca_file=tmp_path / "ca.pem")
    assert accepted == EXIT_LOGOFF_BY_USER, output


def test_a_trusted_ca_lands_in_freerdps_store_under_its_openssl_subject_hash(tmp_path):
    ca_cert, _ = self_signed_certificate("Some CA", ca=True)
    (tmp_path / "ca.pem").write_bytes(ca_cert)
    expected = subprocess.run(["openssl", "x509", "-subject_hash", "-noout", "-in", str(tmp_path / "ca.pem")],
                              capture_output=True, text=True, check=True).stdout.strip()

    installed = trust_ca(tmp_path / "home", tmp_path / "ca.pem")

    assert installed == tmp_path / "home" / ".config" / "freerdp" / "certs" / f"{expected}.0"
    assert installed.parent == freerdp_certificate_store(tmp_path / "home")
    assert x509.load_pem_x509_certificate(installed.read_bytes()).subject.rfc4514_string() == "CN=Some CA"


def test_cert_deny_joins_the_one_cert_option_freerdp_keeps():
    assert with_cert_deny(["/v:h", "/size:800x600"]) == ["/v:h", "/size:800x600", "/cert:deny"]
    assert with_cert_deny(["/cert:name:pool", "/v:h"]) == ["/v:h", "/cert:name:pool,deny"]


def test_tools_available_names_what_is_missing_and_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: none of the tools can be found

    ok, reason = tools_available()

    assert not ok
    for tool in ("xrdp", "xrdp-sesman", "Xvnc", "xfreerdp", "Xvfb", "openssl"):
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
