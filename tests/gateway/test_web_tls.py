"""`serve` terminates TLS for its web listener by default: real handshakes on loopback against a real `serve`
process, with a client that trusts our CA and nothing else."""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import re
import socket
import ssl
import subprocess
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ImproperlyConfigured

from gateway.tls import write_web_credentials
from testbed.lifecycle import read_log
from testbed.ports import free_port
from testbed.processes import REPO_ROOT, ControlPlane

pytestmark = pytest.mark.slow

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    with ControlPlane(data_dir=tmp_path_factory.mktemp("web-tls") / "plane") as started:
        started.manage("shell", "-c", "from django.contrib.auth import get_user_model; "
                                      f"get_user_model().objects.create_user('alice', '', {PASSWORD!r})")
        yield started


def https(plane: ControlPlane, method: str, path: str, *, host: str = "127.0.0.1", body: str | None = None,
          headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One request over a connection that checks the certificate against our CA and ``host``."""
    connection = http.client.HTTPSConnection(host, plane.port, timeout=10, context=plane.ssl_context())
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_the_web_side_is_https_and_its_certificate_names_the_loopback_address_and_localhost(plane):
    assert plane.base_url.startswith("https://")
    for host in ("127.0.0.1", "localhost"):
        assert https(plane, "GET", "/accounts/login/", host=host).status == 200


def test_a_client_that_does_not_trust_our_ca_refuses_the_certificate(plane):
    system_trust_only = http.client.HTTPSConnection(plane.host, plane.port, timeout=10,
                                                    context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        system_trust_only.request("GET", "/")


def test_a_plain_http_request_to_the_tls_listener_fails_cleanly_and_the_server_carries_on(plane):
    with socket.create_connection((plane.host, plane.port), timeout=10) as raw:
        raw.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while chunk := raw.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/")  # no page, and no cookie, ever in clear text

    assert https(plane, "GET", "/accounts/login/").status == 200
    assert "Traceback" not in read_log(plane.log_dir / "serve.log")


def test_the_banner_gives_the_https_address_and_the_ca_fingerprint_users_check_ca_pem_against(plane):
    log = read_log(plane.log_dir / "serve.log")
    assert f"Serving on https://127.0.0.1:{plane.port}/" in log
    fingerprint = re.search(r"SHA-256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", log).group(1)
    status, _, pem = plane.get("/ca.pem")
    served = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert status == 200 and fingerprint.replace(":", "") == hashlib.sha256(served).hexdigest().upper()


def test_responses_carry_hsts_nosniff_referrer_policy_and_the_portal_csp(plane):
    headers = {name.lower(): value for name, value in https(plane, "GET", "/accounts/login/").getheaders()}
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe-inline" not in headers["content-security-policy"]


def test_session_and_csrf_cookies_are_secure(plane):
    login = https(plane, "GET", "/accounts/login/")
    csrf_cookie = login.getheader("Set-Cookie")
    assert "Secure" in csrf_cookie
    token = re.search(r"csrftoken=([^;]+)", csrf_cookie).group(1)
    form = urllib.parse.urlencode({"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token})
    signed_in = https(plane, "POST", "/accounts/login/", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={token}",
        "Referer": f"{plane.base_url}/accounts/login/", "Origin": plane.base_url})

    assert signed_in.status == 302, signed_in.status
    session = [value for name, value in signed_in.getheaders()
               if name.lower() == "set-cookie" and value.startswith("sessionid=")]
    assert session and "Secure" in session[0] and "HttpOnly" in session[0]


def test_an_agent_registers_over_https_only_with_the_ca_it_was_given(plane, tmp_path):
    token = plane.manage("shell", "-c", "from broker.models import HostPool; "
                                        "print(HostPool.objects.create(name='pool-tls').issue_registration_token()[0])"
                         ).stdout.split()[-1]
    command = [sys.executable, "-m", "hostagent.agent", "register", "--server", plane.base_url, "--token", token,
               "--name", "tls-host", "--state-dir", str(tmp_path / "agent")]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}

    untrusted = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr
    assert "Traceback" not in untrusted.stderr

    trusted = subprocess.run([*command, "--ca-file", str(plane.ca_file)], env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120)
    assert trusted.returncode == 0, trusted.stderr
    assert (tmp_path / "agent" / "ca.crt").read_bytes() == plane.ca_file.read_bytes()  # wss:// trusts it from now on


def test_an_agent_given_the_cas_fingerprint_fetches_the_ca_and_registers_only_if_it_matches(plane, tmp_path):
    token = plane.manage("shell", "-c", "from broker.models import HostPool; "
                                        "print(HostPool.objects.create(name='pool-pin').issue_registration_token()[0])"
                         ).stdout.split()[-1]
    right = hashlib.sha256(ssl.PEM_cert_to_DER_cert(plane.ca_file.read_text())).hexdigest().upper()
    wrong = hashlib.sha256(b"another CA").hexdigest()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}

    def register(name: str, fingerprint: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hostagent.agent", "register", "--server", plane.base_url,
                               "--token", token, "--name", name, "--state-dir", str(tmp_path / name),
                               "--ca-fingerprint", fingerprint],
                              env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    refused = register("pin-host-1", wrong)
    assert refused.returncode == 1 and "not registering" in refused.stderr, refused.stderr
    assert not (tmp_path / "pin-host-1").exists()  # nothing sent, nothing stored

    pinned = register("pin-host-2", ":".join(right[i:i + 2] for i in range(0, 64, 2)))
    assert pinned.returncode == 0, pinned.stderr
    assert (tmp_path / "pin-host-2" / "ca.crt").read_bytes() == plane.ca_file.read_bytes()


def test_behind_a_proxy_serve_speaks_plain_http_and_believes_x_forwarded_proto_from_the_trusted_proxy(tmp_path):
    with ControlPlane(data_dir=tmp_path / "plain", serve_args=["--web-plain"],
                      extra_env={"WVD_TRUSTED_PROXIES": "127.0.0.1"}) as behind_proxy:
        assert behind_proxy.base_url.startswith("http://")
        _, forwarded, _ = behind_proxy.get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
        _, direct, _ = behind_proxy.get("/accounts/login/")
        log = read_log(behind_proxy.log_dir / "serve.log")

    assert "strict-transport-security" in forwarded  # the proxy said the client used HTTPS
    assert "strict-transport-security" not in direct
    assert "without TLS, for a TLS-terminating proxy" in log


def _certificate(subject: str, issuer: tuple[x509.Certificate, object] | None, *, ca: bool, names=()):
    """A certificate as another organisation's PKI would issue it (EC P-256); self-signed without issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_cert, issuer_key = issuer or (None, key)
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_given_certificate_files_are_served_with_their_intermediates(tmp_path):
    root = _certificate("Other Root", None, ca=True)
    intermediate = _certificate("Other Intermediate", root, ca=True)
    leaf, leaf_key = _certificate("portal.example.test", intermediate, ca=False,
                                  names=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (tmp_path / "root.pem").write_bytes(_pem(root[0]))
    (tmp_path / "web.pem").write_bytes(_pem(leaf) + _pem(intermediate[0]))  # leaf first, then the chain
    (tmp_path / "web.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    # Only the other root is trusted: the handshake succeeds only if serve sends the intermediate too.
    with ControlPlane(data_dir=tmp_path / "plane", web_ca_file=tmp_path / "root.pem",
                      extra_env={"WVD_WEB_CERT_FILE": str(tmp_path / "web.pem"),
                                 "WVD_WEB_KEY_FILE": str(tmp_path / "web.key")}) as given:
        assert https(given, "GET", "/accounts/login/").status == 200
        assert https(given, "GET", "/accounts/login/", host="localhost").status == 200


def test_unusable_certificate_files_stop_serve_with_one_line(tmp_path):
    plane = ControlPlane(data_dir=tmp_path / "plane", extra_env={
        "WVD_WEB_CERT_FILE": str(tmp_path / "missing.pem"), "WVD_WEB_KEY_FILE": str(tmp_path / "missing.key")})
    plane.env = plane._environment()
    plane.manage("migrate", "--noinput", timeout=300)
    try:
        served = plane.manage("serve", "--listen", f"127.0.0.1:{free_port('127.0.0.1')}", "--no-gateway",
                              check=False, timeout=60)
    finally:
        plane.stop()
    assert served.returncode == 1
    assert "WVD_WEB_CERT_FILE/WVD_WEB_KEY_FILE cannot be loaded" in served.stderr
    assert "Traceback" not in served.stderr


def test_gateway_listen_moves_the_certificates_names_along_and_both_listeners_share_it(tmp_path):
    gateway_port = free_port("127.0.0.2")
    with ControlPlane(data_dir=tmp_path / "moved", extra_env={"WVD_GATEWAY_LISTEN": ""},
                      serve_args=["--gateway-listen", f"127.0.0.2:{gateway_port}"]) as moved:
        context = moved.ssl_context()
        with socket.create_connection(("127.0.0.2", gateway_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.2") as gateway_tls:
                gateway_certificate = gateway_tls.getpeercert(binary_form=True)
        with socket.create_connection((moved.host, moved.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.2") as web_tls:
                web_certificate = web_tls.getpeercert(binary_form=True)

    assert gateway_certificate == web_certificate
    names = x509.load_der_x509_certificate(gateway_certificate).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "127.0.0.2" in names.get_values_for_type(x509.DNSName)  # FreeRDP's form of the address


def test_an_encrypted_key_file_is_refused_with_a_sentence_not_a_passphrase_prompt(tmp_path, settings):
    leaf, key = _certificate("portal.example.test", None, ca=False)
    (tmp_path / "web.pem").write_bytes(_pem(leaf))
    (tmp_path / "web.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.BestAvailableEncryption(b"secret")))
    settings.WEB_CERT_FILE, settings.WEB_KEY_FILE = str(tmp_path / "web.pem"), str(tmp_path / "web.key")
    (tmp_path / "out").mkdir()
    with pytest.raises(ImproperlyConfigured, match="WVD_WEB_KEY_FILE is encrypted"):
        write_web_credentials(tmp_path / "out")
