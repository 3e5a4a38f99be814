"""Fixtures for the CA tests: a private data dir per test, a root, CSRs and foreign CAs built here."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from django.utils import timezone

from core import ca as ca_module


@pytest.fixture
def data_dir(settings, tmp_path) -> Path:
    """Each test gets its own DATA_DIR, so the CA and server keys of one test never leak into another."""
    path = tmp_path / "data"
    path.mkdir()
    settings.DATA_DIR = path
    return path


def write_pem_files(directory: Path, cert: x509.Certificate, key) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def build_ca(common_name: str, key=None, *, is_ca: bool = True, days: int = 365) -> tuple[x509.Certificate, object]:
    """A self-signed certificate as some other organisation's CA would be (EC P-256: fast to make)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = timezone.now()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def sign_leaf(issuer_cert: x509.Certificate, issuer_key, public_key, common_name: str, *,
              not_before=None, not_after=None) -> x509.Certificate:
    now = timezone.now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer_cert.subject).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=1))
        .not_valid_after(not_after or now + timedelta(days=1))
        .sign(issuer_key, hashes.SHA256())
    )


def make_csr(common_name: str | None, *, key=None, dns_names=(), ips=()) -> bytes:
    """A CSR signed by ``key`` (a fresh EC P-256 key by default)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    names = [x509.DNSName(name) for name in dns_names] + [x509.IPAddress(ip) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    # Ed25519 signs without a separate hash algorithm.
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def root_files(tmp_path_factory) -> tuple[Path, Path]:
    """One RSA 3072 root built by the CA's own code, made once per session; each test adopts it
    (RSA 3072 key generation is the slowest step, and creation has tests of its own)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=ca_module.CA_KEY_BITS)
    cert = ca_module._build_root(key, "WVD Root CA")
    return write_pem_files(tmp_path_factory.mktemp("root"), cert, key)


@pytest.fixture
def root(db, data_dir, root_files):
    """This installation's CA, set up in the test's data dir; returns its Certificate record."""
    cert_path, key_path = root_files
    return ca_module.init_ca(cert_path=cert_path, key_path=key_path)


@pytest.fixture
def root_cert(root) -> x509.Certificate:
    return x509.load_pem_x509_certificate(root.pem.encode())
