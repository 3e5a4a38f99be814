"""The gateway's certificate names every public name and address it is reached by, in forms both Python's
ssl (IP SANs) and FreeRDP (CN and DNS SANs only) accept, and a real TLS handshake proves each one."""
from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from core import ca
from core.environment import gateway_addresses
from gateway.tls import server_ssl_context

PUBLIC_IP = "203.0.113.5"
DNS_ALIAS = "rdp.example.net"
IP_ALIAS = "198.51.100.7"


@pytest.fixture
def public_names(monkeypatch, settings):
    """Settings as an admin gets them with a public address and two aliases, listening on every address."""
    def configure(aliases: str) -> list[str]:
        monkeypatch.setenv("WVD_GATEWAY_PUBLIC_HOST", PUBLIC_IP)
        monkeypatch.setenv("WVD_GATEWAY_ALIASES", aliases)
        monkeypatch.delenv("WVD_GATEWAY_TLS_NAMES", raising=False)
        addresses = gateway_addresses(("0.0.0.0", 8443), ("::", 8000))
        settings.GATEWAY_TLS_NAMES = addresses["GATEWAY_TLS_NAMES"]
        return addresses["GATEWAY_TLS_NAMES"]
    return configure


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_the_names_are_the_public_host_the_aliases_and_the_local_defaults_but_no_wildcard(public_names):
    assert public_names(f"{DNS_ALIAS}, {IP_ALIAS}") == [PUBLIC_IP, DNS_ALIAS, IP_ALIAS, "localhost", "127.0.0.1"]


def test_a_listen_host_that_is_not_a_wildcard_is_named_too(monkeypatch):
    for name in ("WVD_GATEWAY_PUBLIC_HOST", "WVD_GATEWAY_ALIASES", "WVD_GATEWAY_TLS_NAMES"):
        monkeypatch.delenv(name, raising=False)
    names = gateway_addresses(("10.1.2.3", 8443), ("[::1]", 8000))["GATEWAY_TLS_NAMES"]
    assert names == ["10.1.2.3", "::1", "localhost", "127.0.0.1"]


def test_explicit_tls_names_replace_the_whole_list(monkeypatch):
    monkeypatch.setenv("WVD_GATEWAY_ALIASES", DNS_ALIAS)
    monkeypatch.setenv("WVD_GATEWAY_TLS_NAMES", "GW.example.net,192.0.2.1")
    assert gateway_addresses(("0.0.0.0", 8443))["GATEWAY_TLS_NAMES"] == ["gw.example.net", "192.0.2.1"]


def test_the_certificate_carries_exactly_the_expected_names(root, public_names):
    public_names(f"{DNS_ALIAS},{IP_ALIAS}")
    cert, _ = ca.load_server_credentials("gateway-tls")

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == PUBLIC_IP
    sans = _sans(cert)
    # Addresses in DNS form too: FreeRDP matches the CN and DNS SANs only, never IP SANs.
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(
        [PUBLIC_IP, DNS_ALIAS, IP_ALIAS, "localhost", "127.0.0.1"])
    assert sorted(sans.get_values_for_type(x509.IPAddress)) == sorted(
        ipaddress.ip_address(value) for value in (PUBLIC_IP, IP_ALIAS, "127.0.0.1"))
    assert len(list(sans)) == 8


def test_a_changed_alias_list_yields_a_new_certificate_and_an_unchanged_one_does_not(root, public_names):
    public_names(DNS_ALIAS)
    first, _ = ca.load_server_credentials("gateway-tls")
    assert ca.load_server_credentials("gateway-tls")[0] == first

    public_names(f"{DNS_ALIAS},{IP_ALIAS}")
    second, _ = ca.load_server_credentials("gateway-tls")

    assert second != first
    assert ipaddress.ip_address(IP_ALIAS) in _sans(second).get_values_for_type(x509.IPAddress)


@contextmanager
def tls_listener(context: ssl.SSLContext) -> Iterator[int]:
    """A TLS server on loopback answering each handshake with b"ok"; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                connection.close()  # the client refused our certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=5)


def _handshake(port: int, name: str, cafile: str) -> bytes:
    client = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client.wrap_socket(raw, server_hostname=name) as tls:
            return tls.recv(2)


def test_a_client_trusting_our_ca_verifies_the_gateway_by_each_name_and_address(root, public_names, data_dir):
    names = public_names(f"{DNS_ALIAS},{IP_ALIAS}")
    cafile = str(data_dir / "ca" / "ca.crt")

    with tls_listener(server_ssl_context()) as port:
        for name in names:
            assert _handshake(port, name, cafile) == b"ok", name
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            _handshake(port, "elsewhere.example.net", cafile)
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            _handshake(port, "192.0.2.200", cafile)
