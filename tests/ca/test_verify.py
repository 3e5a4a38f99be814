"""Verifying presented certificates, and revoking them."""
from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core import ca
from core.models import Certificate
from tests.ca.conftest import build_ca, make_csr, sign_leaf


@pytest.fixture
def agent_certificate(root) -> Certificate:
    return ca.issue_from_csr(make_csr("sh-01"), "host-agent", common_name="sh-01", lifetime=timedelta(days=30))


def _refusal(pem, purpose="host-agent", **kwargs) -> ca.CertificateRefused:
    with pytest.raises(ca.CertificateRefused) as caught:
        ca.verify_certificate(pem, purpose, **kwargs)
    return caught.value


def test_it_accepts_a_certificate_it_issued_for_that_purpose(agent_certificate):
    assert ca.verify_certificate(agent_certificate.pem.encode(), "host-agent") == agent_certificate
    assert ca.verify_certificate(agent_certificate.pem, "host-agent") == agent_certificate


def test_it_refuses_a_revoked_certificate(agent_certificate):
    ca.revoke(agent_certificate, "host decommissioned")
    refusal = _refusal(agent_certificate.pem.encode())
    assert refusal.code == "revoked"
    assert "revoked" in str(refusal)


def test_it_refuses_an_expired_certificate(agent_certificate):
    later = agent_certificate.not_after + timedelta(seconds=1)
    refusal = _refusal(agent_certificate.pem.encode(), now=later)
    assert refusal.code == "expired"
    assert "expired" in str(refusal)


def test_it_refuses_a_certificate_that_is_not_valid_yet(agent_certificate):
    refusal = _refusal(agent_certificate.pem.encode(), now=agent_certificate.not_before - timedelta(seconds=1))
    assert refusal.code == "not_yet_valid"


def test_it_refuses_a_certificate_from_another_ca_even_with_the_same_name(root):
    # Same issuer name as ours, different key: only the signature tells them apart.
    other_cert, other_key = build_ca("WVD Root CA")
    leaf = sign_leaf(other_cert, other_key, ec.generate_private_key(ec.SECP256R1()).public_key(), "sh-01")
    refusal = _refusal(leaf.public_bytes(serialization.Encoding.PEM))
    assert refusal.code == "untrusted"


def test_it_refuses_a_certificate_for_another_purpose(agent_certificate):
    refusal = _refusal(agent_certificate.pem.encode(), "gateway-tls")
    assert refusal.code == "wrong_purpose"
    assert "host-agent" in str(refusal)


def test_it_refuses_a_certificate_signed_with_our_key_but_never_recorded(root, data_dir):
    ca_key = serialization.load_pem_private_key((data_dir / "ca" / "ca.key").read_bytes(), password=None)
    root_cert = x509.load_pem_x509_certificate(root.pem.encode())
    leaf = sign_leaf(root_cert, ca_key, ec.generate_private_key(ec.SECP256R1()).public_key(), "sh-01")
    assert _refusal(leaf.public_bytes(serialization.Encoding.PEM)).code == "unknown"


@pytest.mark.parametrize("pem", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                                 b"A" * (5 * 1024 * 1024), None])
def test_it_refuses_input_that_is_not_a_certificate(root, pem):
    assert _refusal(pem).code == "malformed"


def test_it_refuses_everything_before_a_ca_exists(db, data_dir):
    cert, _ = build_ca("Somebody")
    assert _refusal(cert.public_bytes(serialization.Encoding.PEM)).code == "no_ca"


# --- revoke --------------------------------------------------------------------------------------------


def test_revoking_records_when_and_why_and_keeps_the_first_reason(agent_certificate):
    ca.revoke(agent_certificate, "key compromised")
    first = Certificate.objects.get(pk=agent_certificate.pk)
    ca.revoke(agent_certificate, "again")
    stored = Certificate.objects.get(pk=agent_certificate.pk)

    assert stored.revoked_at is not None and stored.revoked_at == first.revoked_at
    assert stored.revocation_reason == "key compromised"
    assert stored.is_revoked


def test_revoking_a_server_certificate_deletes_its_stored_key(root):
    record, key_pem = ca.issue_key_and_certificate("gateway-tls", common_name="gw", dns_names=["gw.example.net"])
    path = ca.store_server_key(record, key_pem)
    ca.revoke(record, "replaced")
    assert not path.exists()


def test_a_revoked_server_certificate_is_no_longer_served(root, settings):
    settings.GATEWAY_TLS_NAMES = ["gw.example.net"]
    first, _ = ca.load_server_credentials("gateway-tls")
    ca.revoke(Certificate.objects.get(purpose="gateway-tls"), "key leaked")
    second, _ = ca.load_server_credentials("gateway-tls")
    assert second != first


def test_the_root_cannot_be_revoked(root):
    with pytest.raises(ca.CAError, match="cannot be revoked"):
        ca.revoke(root, "no")
    assert Certificate.objects.get(pk=root.pk).revoked_at is None
