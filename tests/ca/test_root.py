"""The root CA: created once with its key kept private, adopted from files, served at /ca.pem."""
from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import CommandError, call_command

from core import ca
from core.models import Certificate
from tests.ca.conftest import build_ca, write_pem_files


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.django_db
def test_it_creates_the_root_with_a_private_key_only_the_owner_can_read(data_dir):
    record = ca.init_ca(common_name="Contoso Desktops CA")

    assert ca.ca_exists()
    assert _mode(data_dir / "ca" / "ca.key") == 0o600
    assert _mode(data_dir / "ca") == 0o700
    assert record.purpose == "ca"
    assert record.common_name == "Contoso Desktops CA"
    assert Certificate.objects.filter(purpose="ca").count() == 1
    assert (data_dir / "ca" / "ca.crt").read_bytes() == ca.ca_certificate_pem()


@pytest.mark.django_db
def test_the_root_is_an_rsa_3072_ca_for_ten_years_that_signs_certificates_and_crls(data_dir):
    record = ca.init_ca()
    cert = x509.load_pem_x509_certificate(record.pem.encode())

    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 3072
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=3650) <= lifetime <= timedelta(days=3651)
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)  # self-signed, signature valid
    assert record.subject == "CN=WVD Root CA"


@pytest.mark.django_db
def test_a_second_init_refuses_and_keeps_the_first_root(data_dir):
    first = ca.init_ca()
    key_before = (data_dir / "ca" / "ca.key").read_bytes()

    with pytest.raises(ca.CAError, match="already exists"):
        ca.init_ca()

    assert (data_dir / "ca" / "ca.key").read_bytes() == key_before
    assert list(Certificate.objects.filter(purpose="ca")) == [first]


@pytest.mark.django_db
def test_it_adopts_an_existing_ca_from_files(data_dir, tmp_path):
    cert, key = build_ca("Contoso Enterprise CA")
    cert_path, key_path = write_pem_files(tmp_path / "org", cert, key)

    record = ca.init_ca(cert_path=cert_path, key_path=key_path)

    assert record.common_name == "Contoso Enterprise CA"
    assert record.purpose == "ca"
    assert ca.ca_certificate_pem() == cert_path.read_bytes()
    assert _mode(data_dir / "ca" / "ca.key") == 0o600


@pytest.mark.django_db
def test_adopting_the_same_ca_again_returns_its_record(root, root_files):
    cert_path, key_path = root_files
    assert ca.init_ca(cert_path=cert_path, key_path=key_path) == root
    assert Certificate.objects.filter(purpose="ca").count() == 1


@pytest.mark.django_db
def test_it_refuses_to_adopt_a_different_ca_when_one_exists(root, tmp_path):
    cert_path, key_path = write_pem_files(tmp_path / "org", *build_ca("Another CA"))
    with pytest.raises(ca.CAError, match="different certificate authority already exists"):
        ca.init_ca(cert_path=cert_path, key_path=key_path)
    assert ca.ca_record() == root


@pytest.mark.django_db
def test_it_refuses_a_key_that_does_not_belong_to_the_certificate(data_dir, tmp_path):
    cert, _ = build_ca("Contoso Enterprise CA")
    cert_path, key_path = write_pem_files(tmp_path / "org", cert, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ca.CAError, match="does not belong"):
        ca.init_ca(cert_path=cert_path, key_path=key_path)
    assert not ca.ca_exists()
    assert not Certificate.objects.exists()


@pytest.mark.django_db
def test_it_refuses_to_adopt_a_certificate_that_is_not_a_ca(data_dir, tmp_path):
    cert_path, key_path = write_pem_files(tmp_path / "org", *build_ca("web server", is_ca=False))
    with pytest.raises(ca.CAError, match="not a CA certificate"):
        ca.init_ca(cert_path=cert_path, key_path=key_path)
    assert not ca.ca_exists()


@pytest.mark.django_db
def test_it_refuses_files_that_are_not_pem(data_dir, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate\n")
    with pytest.raises(ca.CAError, match="does not hold a PEM certificate"):
        ca.init_ca(cert_path=junk, key_path=junk)
    with pytest.raises(ca.CAError, match="both"):
        ca.init_ca(cert_path=junk)


@pytest.mark.django_db
def test_ensure_ca_creates_the_root_once_and_then_returns_it(data_dir):
    first = ca.ensure_ca()
    assert ca.ensure_ca() == first
    assert Certificate.objects.filter(purpose="ca").count() == 1


@pytest.mark.django_db
def test_a_fresh_database_beside_an_existing_ca_gets_the_root_recorded(root):
    Certificate.objects.all().delete()
    assert ca.ca_record().fingerprint_sha256 == root.fingerprint_sha256


# --- python manage.py initca ------------------------------------------------------------------------


@pytest.mark.django_db
def test_initca_creates_the_ca_once_then_says_it_already_exists(data_dir, capsys):
    call_command("initca", "--common-name", "Lab CA")
    assert "Created the certificate authority: CN=Lab CA" in capsys.readouterr().out

    call_command("initca")
    assert "already exists: CN=Lab CA" in capsys.readouterr().out
    assert Certificate.objects.filter(purpose="ca").count() == 1


@pytest.mark.django_db
def test_initca_adopts_a_ca_from_cert_and_key_files(data_dir, tmp_path, capsys):
    cert_path, key_path = write_pem_files(tmp_path / "org", *build_ca("Contoso Enterprise CA"))

    call_command("initca", "--cert", str(cert_path), "--key", str(key_path))
    assert "Adopted the certificate authority: CN=Contoso Enterprise CA" in capsys.readouterr().out

    call_command("initca", "--cert", str(cert_path), "--key", str(key_path))
    assert "already in use" in capsys.readouterr().out


@pytest.mark.django_db
def test_initca_reports_problems_as_command_errors(data_dir, tmp_path):
    cert_path, key_path = write_pem_files(tmp_path / "org", *build_ca("Contoso Enterprise CA"))
    with pytest.raises(CommandError, match="both --cert and --key"):
        call_command("initca", "--cert", str(cert_path))
    with pytest.raises(CommandError, match="--common-name applies to a new CA"):
        call_command("initca", "--cert", str(cert_path), "--key", str(key_path), "--common-name", "X")
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("initca", "--cert", str(tmp_path / "missing.pem"), "--key", str(key_path))
    assert not ca.ca_exists()


# --- GET /ca.pem --------------------------------------------------------------------------------------


@pytest.mark.urls("core.urls")
def test_ca_pem_is_served_to_anyone(root, client):
    response = client.get("/ca.pem")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response.content == root.pem.encode()
    x509.load_pem_x509_certificate(response.content)


@pytest.mark.urls("core.urls")
def test_ca_pem_is_not_found_before_the_ca_exists(db, data_dir, client):
    response = client.get("/ca.pem")
    assert response.status_code == 404
    assert b"initca" in response.content


@pytest.mark.urls("core.urls")
def test_ca_pem_only_answers_reads(root, client):
    assert client.post("/ca.pem").status_code == 405
