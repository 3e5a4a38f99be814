"""A real OpenID Connect provider for tests: django-oauth-toolkit's, in the small Django project
``testbed/oidcprovider/``, served by daphne over HTTPS on a free loopback port, in a directory of its own;
stopped by the id we started.

At start it makes what must never be committed: a test CA and the server certificate it signs (for
127.0.0.1 and localhost), the provider's RSA key for signing ID tokens, and its Django secret key. Clients
that talk to it trust ``ca_file`` only (the control plane with WVD_OIDC_CA_FILE, a browser through its NSS
store). Clients and users are changed while it runs with ``add_client()`` and ``set_user()``.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 60.0
SETTINGS_MODULE = "testbed.oidcprovider.settings"


class OidcProviderError(RuntimeError):
    """The provider did not start or refused a change (the message carries its log)."""


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signs for 127.0.0.1 and localhost: (ca, cert, key) paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test OIDC provider CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    paths[2].chmod(0o600)
    return paths


class OidcProvider:
    """The provider as a real process; a context manager, or call start()/stop().

    After start: ``issuer`` (https://127.0.0.1:<port>/o), ``ca_file``, ``signing_key_file`` (the key its ID
    tokens are signed with: tests forge tokens with it), ``ssl_context()``, ``log()``.
    """

    def __init__(self, groups_claim: str = "groups") -> None:
        self.groups_claim = groups_claim
        self.port = free_port()
        self.issuer = f"https://127.0.0.1:{self.port}/o"
        self.directory = Path(tempfile.mkdtemp(prefix="wvd-oidcp-"))
        self.ca_file = self.directory / "ca.pem"
        self.signing_key_file = self.directory / "signing-key.pem"
        self.log_path = self.directory / "provider.log"
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith(("WVD_", "DJANGO_"))}
        env.update({"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE, "OIDCP_DIR": str(self.directory),
                    "OIDCP_ISSUER": self.issuer, "OIDCP_GROUPS_CLAIM": self.groups_claim,
                    "PYTHONPATH": str(REPO_ROOT)})
        return env

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def __enter__(self) -> OidcProvider:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        _, cert, key = make_tls_files(self.directory)
        signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_key_file.write_bytes(_pem_key(signing_key))
        (self.directory / "secret-key").write_text(secrets.token_urlsafe(50))
        self._run("-m", "django", "migrate", "--noinput", "-v", "0")
        endpoint = f"ssl:{self.port}:privateKey={key}:certKey={cert}:interface=127.0.0.1"
        self.process = start_logged([sys.executable, "-m", "daphne", "-e", endpoint,
                                     "testbed.oidcprovider.asgi:application"],
                                    self.log_path, env=self.env, cwd=REPO_ROOT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                self.discovery()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise OidcProviderError(f"the OIDC provider did not start:\n{self.log()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def discovery(self) -> dict:
        url = f"{self.issuer}/.well-known/openid-configuration"
        with urllib.request.urlopen(url, context=self.ssl_context(), timeout=5) as response:
            return json.load(response)

    def log(self) -> str:
        return read_log(self.log_path, 20_000)

    def add_client(self, client_id: str, secret: str, *redirect_uris: str) -> None:
        """Register a confidential authorization-code client whose ID tokens are signed with RS256."""
        self._run("-m", "testbed.oidcprovider.accounts", "client", client_id, secret, *redirect_uris)

    def set_user(self, name: str, password: str, groups: list[str] = (), email: str = "",
                 active: bool = True) -> None:
        """Create or change a user: their groups become exactly ``groups``."""
        self._run("-m", "testbed.oidcprovider.accounts", "user", name, password, "--email", email,
                  "--groups", ",".join(groups), *([] if active else ["--inactive"]))

    def _run(self, *args: str) -> None:
        done = subprocess.run([sys.executable, *args], env=self.env, cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise OidcProviderError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
