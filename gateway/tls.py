"""TLS for both listeners of `serve`: the RD Gateway's context and the web listener's endpoint, each from
files given by the admin or the gateway-tls certificate our CA issues for the public names."""
from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core import ca


def server_ssl_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert_file, key_file = settings.GATEWAY_CERT_FILE, settings.GATEWAY_KEY_FILE
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise ImproperlyConfigured("set both WVD_GATEWAY_CERT_FILE and WVD_GATEWAY_KEY_FILE, or neither")
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ImproperlyConfigured(f"WVD_GATEWAY_CERT_FILE/WVD_GATEWAY_KEY_FILE cannot be loaded: {exc}") from None
        return context
    certificate, key = ca.load_server_credentials("gateway-tls")
    chain = certificate.public_bytes(serialization.Encoding.PEM) + ca.ca_certificate_pem()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # ssl wants files: write them into a private directory only for the moment of loading.
    with tempfile.TemporaryDirectory(prefix="wvd-gw-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(chain)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        context.load_cert_chain(str(cert_path), str(key_path))
    return context


# --- the web listener ------------------------------------------------------------------------------------


def _endpoint_value(value: str) -> str:
    """A value as Twisted's endpoint strings need it: ``\\``, ``:`` and ``=`` escaped."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _encrypted_key() -> bytes:
    # Called only for an encrypted key: `serve` runs unattended, so it never asks for a passphrase.
    raise ImproperlyConfigured("WVD_WEB_KEY_FILE is encrypted; decrypt it (openssl pkey) for serve to read it")


def write_web_credentials(directory: Path) -> tuple[Path, Path, Path | None]:
    """The web listener's certificate, key and chain (None: no intermediates) as files in ``directory``
    (private, the caller's to remove): WVD_WEB_CERT_FILE/WVD_WEB_KEY_FILE when given, otherwise the
    gateway-tls certificate from our CA, which names the same public names (core.environment.gateway_addresses)
    and is sent with our CA as its chain. Raises ImproperlyConfigured for files that cannot be used."""
    cert_file, key_file = settings.WEB_CERT_FILE, settings.WEB_KEY_FILE
    if cert_file:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file, password=_encrypted_key)
            certificates = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())
            key_pem = Path(key_file).read_bytes()
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ImproperlyConfigured(f"WVD_WEB_CERT_FILE/WVD_WEB_KEY_FILE cannot be loaded: {exc}") from None
        leaf, *intermediates = certificates
        chain = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in intermediates)
    else:
        leaf, key = ca.load_server_credentials("gateway-tls")
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        chain = ca.ca_certificate_pem()
    cert_path, key_path = directory / "web.crt", directory / "web.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    chain_path = None
    if chain:
        chain_path = directory / "chain.crt"
        chain_path.write_bytes(chain)
    return cert_path, key_path, chain_path


def web_endpoint(host: str, port: int, credentials: tuple[Path, Path, Path | None] | None) -> str:
    """The Twisted endpoint string daphne listens on: ``ssl:`` with the files of ``write_web_credentials``,
    or plain ``tcp:`` (behind a TLS-terminating proxy) when ``credentials`` is None."""
    interface = _endpoint_value(host.strip("[]"))
    if credentials is None:
        return f"tcp:port={int(port)}:interface={interface}"
    cert_path, key_path, chain_path = credentials
    description = (f"ssl:port={int(port)}:interface={interface}:privateKey={_endpoint_value(str(key_path))}"
                   f":certKey={_endpoint_value(str(cert_path))}")
    if chain_path is not None:
        description += f":extraCertChain={_endpoint_value(str(chain_path))}"
    return description
