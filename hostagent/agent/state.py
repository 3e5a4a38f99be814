"""The agent's state directory: its key, its certificate, the CA to trust, and where to connect.

Layout (directory mode 0700):
  agent.json          server URL, host name, host id, and which key/certificate files are current
  agent-<serial>.key  the private key (mode 0600), EC P-256
  agent-<serial>.crt  its host-agent certificate
  ca.crt              the control plane's CA certificate
A renewal writes the new key and certificate under new names, then replaces agent.json in one
rename: whatever moment the agent stops at, agent.json names a key and certificate that match.
"""
from __future__ import annotations

import json
import os
import ssl
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

STATE_FILE = "agent.json"
CA_FILE = "ca.crt"
CHANNEL_PATH = "/ws/hostagent/"


def default_state_dir() -> Path:
    configured = os.environ.get("WVD_AGENT_STATE_DIR")
    if configured:
        return Path(configured)
    if os.name == "nt":
        return Path(os.environ.get("ProgramData", r"C:\ProgramData")) / "wvd-agent"
    return Path("/var/lib/wvd-agent")


class StateError(Exception):
    """The state directory is missing, unreadable or inconsistent; the message says what to do."""


def normalise_server_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; raises ValueError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// server URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} must not have a query or fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def channel_url(server_url: str) -> str:
    """The host channel's WebSocket URL for a server URL: ws:// for http://, wss:// for https://."""
    parts = urlsplit(server_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + CHANNEL_PATH, "", ""))


@dataclass(frozen=True)
class AgentState:
    directory: Path
    server: str
    name: str
    session_host_id: int
    host_pool: str
    key_file: str
    certificate_file: str

    @property
    def channel_url(self) -> str:
        return channel_url(self.server)

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    def load_credentials(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, str]:
        """The private key, the certificate and its PEM text."""
        try:
            key = serialization.load_pem_private_key((self.directory / self.key_file).read_bytes(), password=None)
            pem = (self.directory / self.certificate_file).read_text()
            certificate = x509.load_pem_x509_certificate(pem.encode())
        except (OSError, ValueError, TypeError) as exc:
            raise StateError(f"The agent's key or certificate in {self.directory} cannot be read ({exc}); "
                             "register the host again.") from None
        return key, certificate, pem

    def ssl_context(self, ca_file: Path | None = None) -> ssl.SSLContext:
        """TLS for wss:// trusting our CA only (or ``ca_file`` when the server shows another CA's cert)."""
        return ssl.create_default_context(cafile=str(ca_file or self.ca_path))

    def relay_ssl_context(self) -> ssl.SSLContext:
        """TLS to a gateway instance's listener: our CA (the gateway-tls certificate it issues by default)
        and the system's (a certificate the admin installed with WVD_GATEWAY_CERT_FILE, which RDP clients
        must trust anyway). The agent still proves itself with its key; RDP's own TLS runs inside."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.load_default_certs()
        return context


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: ec.EllipticCurvePrivateKey, name: str) -> str:
    """A CSR whose common name is the host name (the CA checks it equals the registered name)."""
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM).decode()


def check_issued(key: ec.EllipticCurvePrivateKey, certificate_pem: str, ca_pem: str, name: str) -> x509.Certificate:
    """Check a certificate the server issued: our key, our name, signed by the CA given with it."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        authority = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        raise StateError("The server sent a certificate that is not valid PEM.") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise StateError("The server sent a certificate for another key.")
    names = [attr.value for attr in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if [str(value).lower() for value in names] != [name.lower()]:
        raise StateError(f"The server sent a certificate for {names!r}, not {name!r}.")
    try:
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        raise StateError("The server sent a certificate its CA did not sign.") from None
    return certificate


def write_atomic(path: Path, data: bytes, mode: int, *, group: int | None = None) -> None:
    """Write to a temporary file in the same directory with ``mode`` (and ``group``, a gid) from the start,
    fsync, rename."""
    # mkstemp creates the file 0600, so a key is never readable by others, not even for a moment.
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if group is not None:
            os.fchown(fd, -1, group)  # before the mode lets that group read it
        if hasattr(os, "fchmod"):  # not on Windows, where the directory's ACL protects the key
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def install_credentials(directory: Path, *, server: str, name: str, session_host_id: int, host_pool: str,
                        key: ec.EllipticCurvePrivateKey, certificate_pem: str, ca_pem: str) -> AgentState:
    """Store a key and certificate and make them current in one rename of agent.json; the files of
    the previous credentials are removed afterwards."""
    certificate = check_issued(key, certificate_pem, ca_pem, name)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    previous = load_state(directory) if (directory / STATE_FILE).exists() else None
    stem = f"agent-{certificate.serial_number:x}"[:40]
    write_atomic(directory / f"{stem}.key", _key_bytes(key), 0o600)
    write_atomic(directory / f"{stem}.crt", certificate_pem.encode(), 0o644)
    write_atomic(directory / CA_FILE, ca_pem.encode(), 0o644)
    state = AgentState(directory=directory, server=server, name=name, session_host_id=session_host_id,
                       host_pool=host_pool, key_file=f"{stem}.key", certificate_file=f"{stem}.crt")
    record = {key_name: value for key_name, value in asdict(state).items() if key_name != "directory"}
    write_atomic(directory / STATE_FILE, json.dumps(record, indent=2).encode() + b"\n", 0o600)
    if previous is not None:
        for old in (previous.key_file, previous.certificate_file):
            if old not in (state.key_file, state.certificate_file):
                (directory / old).unlink(missing_ok=True)
    return state


def load_state(directory: Path) -> AgentState:
    path = directory / STATE_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise StateError(f"{path} does not exist: register this host first "
                         "(python -m hostagent.agent register --server URL --token TOKEN).") from None
    except (OSError, ValueError) as exc:
        raise StateError(f"{path} cannot be read: {exc}") from None
    try:
        state = AgentState(directory=directory, server=normalise_server_url(record["server"]), name=str(record["name"]),
                           session_host_id=int(record["session_host_id"]), host_pool=str(record["host_pool"]),
                           key_file=Path(record["key_file"]).name,
                           certificate_file=Path(record["certificate_file"]).name)
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{path} is incomplete or damaged ({exc}); register the host again.") from None
    return state
