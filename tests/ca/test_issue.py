"""Issuing: from a CSR for each purpose with the right key usage, refusals that record nothing, and
certificates with server-side keys. OpenSSL, an independent implementation, accepts what we issue."""
from __future__ import annotations

import ipaddress
import shutil
import subprocess
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from core import ca
from core.models import Certificate
from tests.ca.conftest import make_csr

EKU = {
    "feed-signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "host-agent": ExtendedKeyUsageOID.CLIENT_AUTH,
    "host-rdp": ExtendedKeyUsageOID.SERVER_AUTH,
    "gateway-tls": ExtendedKeyUsageOID.SERVER_AUTH,
}
NAMES = {"feed-signing": [], "host-agent": [], "host-rdp": ["sh-01.hosts.example.net"],
         "gateway-tls": ["gw.example.net", "192.0.2.10"]}


def _leaves():
    return Certificate.objects.exclude(purpose="ca")


def _cert(record: Certificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(record.pem.encode())


@pytest.mark.parametrize("purpose", ["feed-signing", "host-agent", "host-rdp", "gateway-tls"])
def test_it_issues_from_a_csr_with_the_extended_key_usage_of_the_purpose(root, root_cert, purpose):
    record = ca.issue_from_csr(make_csr("sh-01"), purpose, common_name="sh-01", dns_names=NAMES[purpose])
    cert = _cert(record)

    assert record.purpose == purpose and record.common_name == "sh-01"
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [EKU[purpose]])
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(root_cert)
    assert record.serial_number == format(cert.serial_number, "032x")
    assert cert.serial_number.bit_length() <= 128


@pytest.mark.parametrize("purpose", ["gateway-tls", "host-rdp"])
def test_server_certificates_name_addresses_as_ip_sans_and_in_dns_form_for_freerdp(root, purpose):
    # FreeRDP's name check reads the CN and DNS SANs only: an address must be a DNS SAN too.
    record = ca.issue_from_csr(make_csr("gw.example.net"), purpose, common_name="gw.example.net",
                               dns_names=["GW.example.net", "192.0.2.10", "2001:db8::7"])
    names = _cert(record).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gw.example.net", "192.0.2.10", "2001:db8::7"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10"),
                                                         ipaddress.ip_address("2001:db8::7")]


def test_certificates_that_are_not_tls_servers_get_no_dns_form_of_an_address(root):
    record = ca.issue_from_csr(make_csr("agent"), "host-agent", common_name="agent", dns_names=["192.0.2.10"])
    names = _cert(record).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(names) == [x509.IPAddress(ipaddress.ip_address("192.0.2.10"))]


def test_a_csr_may_ask_for_the_dns_form_of_an_allowed_address(root):
    csr = make_csr("sh-01", dns_names=["192.0.2.10"], ips=[ipaddress.ip_address("192.0.2.10")])
    record = ca.issue_from_csr(csr, "host-rdp", common_name="sh-01", dns_names=["192.0.2.10"])
    assert record.purpose == "host-rdp"


def test_a_csr_asking_for_the_dns_form_of_another_address_is_refused(root):
    csr = make_csr("sh-01", dns_names=["192.0.2.99"])
    with pytest.raises(ca.CSRRejected, match="192.0.2.99"):
        ca.issue_from_csr(csr, "host-rdp", common_name="sh-01", dns_names=["192.0.2.10"])
    assert not _leaves().exists()


def test_serials_are_random_and_distinct(root):
    serials = {ca.issue_from_csr(make_csr("agent"), "host-agent", common_name="agent").serial_number
               for _ in range(3)}
    assert len(serials) == 3


def test_it_accepts_csrs_with_rsa_2048_and_ec_p384_keys(root):
    rsa_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for key in (rsa_2048, ec.generate_private_key(ec.SECP384R1())):
        ca.issue_from_csr(make_csr("agent", key=key), "host-agent", common_name="agent")
    assert _leaves().count() == 2


def test_it_accepts_the_requested_names_that_are_allowed(root):
    csr = make_csr("sh-01", dns_names=["sh-01.hosts.example.net"])
    record = ca.issue_from_csr(csr, "host-rdp", common_name="sh-01",
                               dns_names=["sh-01.hosts.example.net", "sh-01"])
    assert record.purpose == "host-rdp"


def test_the_lifetime_comes_from_settings_unless_given(root, settings):
    settings.CERTIFICATE_LIFETIMES = {**settings.CERTIFICATE_LIFETIMES, "host-agent": timedelta(days=40)}
    default = ca.issue_from_csr(make_csr("agent"), "host-agent", common_name="agent")
    explicit = ca.issue_from_csr(make_csr("agent"), "host-agent", common_name="agent", lifetime=timedelta(days=7))

    assert timedelta(days=40) <= default.not_after - default.not_before <= timedelta(days=40, minutes=6)
    assert timedelta(days=7) <= explicit.not_after - explicit.not_before <= timedelta(days=7, minutes=6)


def test_a_certificate_never_outlives_the_root(root):
    record = ca.issue_from_csr(make_csr("agent"), "host-agent", common_name="agent", lifetime=timedelta(days=99999))
    assert record.not_after == root.not_after


# --- refusals: nothing issued, nothing recorded -----------------------------------------------------------


def _bad_signature_csr() -> bytes:
    """A well-formed CSR whose subject was changed after signing: the signature no longer matches."""
    der = x509.load_pem_x509_csr(make_csr("host-a")).public_bytes(serialization.Encoding.DER)
    tampered = der.replace(b"host-a", b"host-b")
    assert tampered != der
    return x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM)


REFUSALS = {
    "bad PEM": (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n",
                "not a valid PEM"),
    "garbage": (lambda: b"\x00\xffhello", "not a valid PEM"),
    "empty": (lambda: b"", "empty"),
    "oversized": (lambda: b"A" * (10 * 1024 * 1024), "larger than"),
    "bad signature": (_bad_signature_csr, "signature does not match"),
    "weak RSA 1024 key": (
        lambda: make_csr("host-b", key=rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        "weak RSA key",
    ),
    "Ed25519 key": (lambda: make_csr("host-b", key=ed25519.Ed25519PrivateKey.generate()), "unsupported key type"),
    "curve P-521": (lambda: make_csr("host-b", key=ec.generate_private_key(ec.SECP521R1())), "P-256 or P-384"),
    "wrong common name": (lambda: make_csr("someone-else"), "must name exactly 'host-b'"),
    "no common name": (lambda: make_csr(None), "must name exactly 'host-b'"),
    "SAN not allowed": (lambda: make_csr("host-b", dns_names=["host-b.example.net", "evil.example.net"]),
                        "evil.example.net"),
    "IP SAN not allowed": (lambda: make_csr("host-b", ips=[ipaddress.ip_address("10.0.0.1")]), "10.0.0.1"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_it_refuses_a_bad_csr_and_records_nothing(root, case, caplog):
    build, message = REFUSALS[case]
    with pytest.raises(ca.CSRRejected, match=message):
        ca.issue_from_csr(build(), "host-rdp", common_name="host-b", dns_names=["host-b.example.net"])
    assert not _leaves().exists()
    assert "Certificate request refused" in caplog.text


def test_it_refuses_a_certificate_presented_as_a_csr(root):
    pem = root.pem.encode()
    with pytest.raises(ca.CSRRejected, match="not a valid PEM"):
        ca.issue_from_csr(pem, "host-agent", common_name="WVD Root CA")


def test_it_refuses_purposes_it_does_not_issue_from_csrs(root):
    with pytest.raises(ca.CAError, match="not issued here"):
        ca.issue_from_csr(make_csr("evil"), "ca", common_name="evil")
    with pytest.raises(ca.CAError, match="needs at least one DNS name"):
        ca.issue_from_csr(make_csr("sh-01"), "host-rdp", common_name="sh-01")
    with pytest.raises(ca.CAError, match="not a valid host name"):
        ca.issue_from_csr(make_csr("sh-01"), "host-rdp", common_name="sh-01", dns_names=["bad name!"])
    with pytest.raises(ca.CAError, match="not a valid host name"):
        ca.issue_from_csr(make_csr("sh-01"), "host-rdp", common_name="sh-01", dns_names=["sh-01\n"])
    assert not _leaves().exists()


def test_it_cannot_issue_before_the_ca_exists(db, data_dir):
    with pytest.raises(ca.CAError, match="initca"):
        ca.issue_from_csr(make_csr("agent"), "host-agent", common_name="agent")
    assert not Certificate.objects.exists()


# --- server-side keys ------------------------------------------------------------------------------------


def test_it_issues_a_key_and_certificate_for_server_side_purposes(root):
    record, key_pem = ca.issue_key_and_certificate("feed-signing", common_name="Contoso Feed")
    key = serialization.load_pem_private_key(key_pem, password=None)

    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.public_key().public_numbers() == _cert(record).public_key().public_numbers()
    assert record.purpose == "feed-signing"


def test_it_never_makes_or_keeps_a_host_agents_key(root):
    with pytest.raises(ca.CAError, match="not issued here"):
        ca.issue_key_and_certificate("host-agent", common_name="agent")
    agent = ca.issue_from_csr(make_csr("agent"), "host-agent", common_name="agent")
    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ca.CAError, match="never kept on the server"):
        ca.store_server_key(agent, key_pem)


def test_stored_server_keys_are_private_files(root, data_dir):
    record, key_pem = ca.issue_key_and_certificate("gateway-tls", common_name="gw", dns_names=["gw.example.net"])
    path = ca.store_server_key(record, key_pem)

    assert path.parent == data_dir / "keys"
    assert path.read_bytes() == key_pem
    assert path.stat().st_mode & 0o777 == 0o600
    assert (data_dir / "keys").stat().st_mode & 0o777 == 0o700


def test_it_refuses_to_store_a_key_that_is_not_the_certificates(root):
    record, _ = ca.issue_key_and_certificate("gateway-tls", common_name="gw", dns_names=["gw.example.net"])
    _, other_key = ca.issue_key_and_certificate("gateway-tls", common_name="gw", dns_names=["gw.example.net"])
    with pytest.raises(ca.CAError, match="does not belong"):
        ca.store_server_key(record, other_key)


def test_load_server_credentials_issues_once_then_returns_the_same_pair(root, settings):
    settings.GATEWAY_TLS_NAMES = ["gw.example.net", "192.0.2.10"]
    cert, key = ca.load_server_credentials("gateway-tls")
    again, again_key = ca.load_server_credentials("gateway-tls")

    assert again == cert
    assert again_key.private_numbers() == key.private_numbers()
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gw.example.net", "192.0.2.10"]
    assert Certificate.objects.filter(purpose="gateway-tls").count() == 1


def test_load_server_credentials_replaces_a_certificate_naming_an_address_only_as_an_ip_san(root, settings):
    # What earlier releases issued: FreeRDP cannot match 192.0.2.10 against it, so it is not reused.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    old = ca._issue(key.public_key(), ca.CertificatePurpose.GATEWAY_TLS, "gw.example.net",
                    [x509.DNSName("gw.example.net"), x509.IPAddress(ipaddress.ip_address("192.0.2.10"))],
                    timedelta(days=90))
    ca.store_server_key(old, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    settings.GATEWAY_TLS_NAMES = ["gw.example.net", "192.0.2.10"]

    cert, _ = ca.load_server_credentials("gateway-tls")

    assert ca.serial_hex(cert) != old.serial_number
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert x509.DNSName("192.0.2.10") in names


def test_load_server_credentials_issues_a_new_certificate_when_the_names_change(root, settings):
    settings.GATEWAY_TLS_NAMES = ["gw.example.net"]
    first, _ = ca.load_server_credentials("gateway-tls")
    settings.GATEWAY_TLS_NAMES = ["gw.example.net", "gw2.example.net"]
    second, _ = ca.load_server_credentials("gateway-tls")

    assert second != first
    assert Certificate.objects.filter(purpose="gateway-tls").count() == 2


def test_load_server_credentials_for_a_session_host_needs_its_name(root):
    with pytest.raises(ca.CAError, match="pass its common_name"):
        ca.load_server_credentials("host-rdp")
    cert, _ = ca.load_server_credentials("host-rdp", common_name="sh-01.hosts.example.net")
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["sh-01.hosts.example.net"]


# --- an independent verifier ----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize(("purpose", "openssl_purpose"), [
    ("host-agent", "sslclient"), ("gateway-tls", "sslserver"), ("host-rdp", "sslserver"), ("feed-signing", "any"),
])
def test_openssl_verifies_an_issued_certificate_against_the_ca(root, tmp_path, purpose, openssl_purpose):
    record = ca.issue_from_csr(make_csr("sh-01"), purpose, common_name="sh-01", dns_names=NAMES[purpose])
    (tmp_path / "ca.pem").write_bytes(ca.ca_certificate_pem())
    (tmp_path / "leaf.pem").write_text(record.pem)

    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), "-purpose", openssl_purpose,
         str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_refuses_a_client_certificate_used_as_a_server_certificate(root, tmp_path):
    record = ca.issue_from_csr(make_csr("agent"), "host-agent", common_name="agent")
    (tmp_path / "ca.pem").write_bytes(ca.ca_certificate_pem())
    (tmp_path / "leaf.pem").write_text(record.pem)
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "sslserver",
         str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
