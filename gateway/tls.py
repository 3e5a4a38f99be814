"""The gateway's TLS context: files given by the admin, or a gateway-tls certificate from our CA."""
from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

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
