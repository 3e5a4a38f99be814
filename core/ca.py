"""Our own certificate authority: the root, certificates issued from CSRs or with server-side keys,
verification, revocation and renewal.

The root's key lives in ``DATA_DIR/ca/ca.key`` (mode 0600) beside ``ca.crt``; server-side keys in
``DATA_DIR/keys/<serial>.key`` (mode 0600). Every certificate issued, and the root itself, is recorded
in :class:`core.models.Certificate`; a certificate that is not recorded is never trusted.

The root is RSA 3072 signing with SHA-256. ECDSA P-384 would be smaller and faster, but this root
anchors three kinds of relying party we do not control: mstsc checking .rdp signatures (rdpsign's
format is RSA-based), RDP clients and thin clients validating the session host's TLS certificate, and
xrdp/OpenSSL on hosts. An RSA chain is accepted by all of them; 3072 bits is NIST's ~128-bit level,
good past 2030 for a 10-year root. Key generation (~0.1 s) happens once, so its cost does not matter.
Server-side leaf keys are RSA 2048 for the same compatibility reason; agents may send RSA or EC CSRs.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.choices import CertificatePurpose
from core.environment import DNS_NAME as _DNS_NAME  # one rule for names, settings and certificates
from core.models import Certificate

logger = logging.getLogger(__name__)

CA_KEY_BITS = 3072
SERVER_KEY_BITS = 2048
MIN_RSA_BITS = 2048
# Bounded above as well: verifying a huge RSA key costs CPU and nobody needs more than 8192 bits.
MAX_RSA_BITS = 8192
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
# Certificates and CSRs are a few kilobytes; refuse anything larger before parsing it.
MAX_PEM_BYTES = 16 * 1024
MAX_CA_FILE_BYTES = 1024 * 1024
# X.509's upper bound for a common name (RFC 5280 ub-common-name).
MAX_COMMON_NAME = 64
# Backdate notBefore a little so a relying party whose clock is slightly behind accepts a fresh cert.
CLOCK_SKEW = timedelta(minutes=5)

SERVER_SIDE_PURPOSES = (
    CertificatePurpose.FEED_SIGNING,
    CertificatePurpose.GATEWAY_TLS,
    CertificatePurpose.HOST_RDP,
)
LEAF_PURPOSES = (*SERVER_SIDE_PURPOSES, CertificatePurpose.HOST_AGENT)
# Purposes whose certificate is a TLS server's: relying parties match the host name against the SANs.
SERVER_AUTH_PURPOSES = (CertificatePurpose.GATEWAY_TLS, CertificatePurpose.HOST_RDP)

_EXTENDED_KEY_USAGE = {
    CertificatePurpose.FEED_SIGNING: ExtendedKeyUsageOID.CODE_SIGNING,
    CertificatePurpose.HOST_AGENT: ExtendedKeyUsageOID.CLIENT_AUTH,
    CertificatePurpose.HOST_RDP: ExtendedKeyUsageOID.SERVER_AUTH,
    CertificatePurpose.GATEWAY_TLS: ExtendedKeyUsageOID.SERVER_AUTH,
}


class CAError(Exception):
    """The CA cannot do what was asked; the message is a sentence for the user."""


class CSRRejected(CAError):
    """A certificate signing request was refused; nothing was issued or recorded."""


class CertificateRefused(CAError):
    """A presented certificate is not one we trust for the purpose.

    ``code`` names the reason for programs: malformed, no_ca, untrusted, not_yet_valid, expired,
    unknown, revoked, wrong_purpose.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


# --- the root -------------------------------------------------------------------------------------


def _ca_dir() -> Path:
    return Path(settings.DATA_DIR) / "ca"


def _ca_cert_path() -> Path:
    return _ca_dir() / "ca.crt"


def _ca_key_path() -> Path:
    return _ca_dir() / "ca.key"


def ca_exists() -> bool:
    """True when the root's certificate and key are both in ``DATA_DIR/ca/``."""
    return _ca_cert_path().is_file() and _ca_key_path().is_file()


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(cert: x509.Certificate) -> str:
    """A certificate's serial as stored in Certificate.serial_number: lower-case hex, at least 32 digits."""
    return format(cert.serial_number, "032x")


def is_certificate_name(name: str) -> bool:
    """Whether ``name`` can be a subjectAltName of a certificate we issue: a DNS name or an IP address."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return bool(_DNS_NAME.fullmatch(name))
    return True


def _common_name_of(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else cert.subject.rfc4514_string()
    return str(value)[:255]


def _load_ca_certificate() -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_ca_cert_path().read_bytes())
    except FileNotFoundError:
        raise CAError("No certificate authority is set up yet: run `python manage.py initca`.") from None
    except (OSError, ValueError) as exc:
        raise CAError(f"The CA certificate in {_ca_cert_path()} cannot be read: {exc}") from None


# Parsing (and validating) an RSA-3072 key costs about 90 ms: keep the parsed CA key while its file is
# unchanged, so issuing and verifying do not pay it every time.
_ca_key_cache: dict[tuple[str, int, int], CertificateIssuerPrivateKeyTypes] = {}


def _load_ca_key() -> CertificateIssuerPrivateKeyTypes:
    path = _ca_key_path()
    stat = path.stat()
    fingerprint = (str(path), stat.st_mtime_ns, stat.st_size)
    key = _ca_key_cache.get(fingerprint)
    if key is None:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        _ca_key_cache.clear()
        _ca_key_cache[fingerprint] = key
    return key


def _load_ca() -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    cert = _load_ca_certificate()
    try:
        key = _load_ca_key()
    except FileNotFoundError:
        raise CAError(f"The CA key {_ca_key_path()} is missing: restore it or adopt a CA with initca.") from None
    except (OSError, ValueError, TypeError) as exc:
        raise CAError(f"The CA key in {_ca_key_path()} cannot be read: {exc}") from None
    return cert, key


def ca_certificate_pem() -> bytes:
    """The root certificate, PEM-encoded (what clients and hosts import to trust us)."""
    return _load_ca_certificate().public_bytes(serialization.Encoding.PEM)


def ca_fingerprint() -> str:
    """The root's SHA-256 fingerprint as ``openssl x509 -noout -fingerprint -sha256`` prints it (AB:CD:...):
    what a user compares a downloaded /ca.pem with, and what ``register --ca-fingerprint`` pins."""
    return format_fingerprint(_fingerprint(_load_ca_certificate()))


def format_fingerprint(hex_digest: str) -> str:
    digest = hex_digest.upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def ca_record() -> Certificate:
    """The record of the current root, recording it first if the database does not have it yet
    (a fresh database next to an existing ``DATA_DIR/ca``)."""
    cert = _load_ca_certificate()
    record, _ = Certificate.objects.get_or_create(
        fingerprint_sha256=_fingerprint(cert),
        defaults=_record_fields(cert, CertificatePurpose.CA),
    )
    return record


def _check_common_name(common_name: str) -> None:
    if not isinstance(common_name, str) or not common_name.strip() or len(common_name) > MAX_COMMON_NAME:
        raise CAError(f"A common name must be 1-{MAX_COMMON_NAME} characters, not {common_name!r}.")


def _key_problem(public_key, what: str) -> str | None:
    """Why a public key is not acceptable here, or None: RSA 2048-8192 bits or EC P-256/P-384."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            return f"{what} has a weak RSA key ({public_key.key_size} bits); use at least {MIN_RSA_BITS}."
        if public_key.key_size > MAX_RSA_BITS:
            return f"{what} has an RSA key of {public_key.key_size} bits; at most {MAX_RSA_BITS} are accepted."
        return None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ALLOWED_CURVES):
            return f"{what} uses the curve {public_key.curve.name}; use P-256 or P-384."
        return None
    return f"{what} has an unsupported key type; use RSA (2048 bits or more) or EC P-256/P-384."


def _build_root(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    now = timezone.now()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_random_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + settings.CA_VALIDITY)
        # path_length=0: this root signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )


def _read_bounded(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CA_FILE_BYTES + 1)
    except OSError as exc:
        raise CAError(f"The {what} file {path} cannot be read: {exc.strerror}.") from None
    if len(data) > MAX_CA_FILE_BYTES:
        raise CAError(f"The {what} file {path} is too large to be a PEM file.")
    return data


def _read_ca_files(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    """Load and check a CA to adopt: a currently valid CA certificate and the key that belongs to it."""
    try:
        cert = x509.load_pem_x509_certificate(_read_bounded(Path(cert_path), "certificate"))
    except ValueError:
        raise CAError(f"{cert_path} does not hold a PEM certificate.") from None
    try:
        key = serialization.load_pem_private_key(_read_bounded(Path(key_path), "key"), password=None)
    except TypeError:
        raise CAError(f"The key in {key_path} is encrypted; decrypt it (openssl pkey) before adopting it.") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CAError(f"{key_path} does not hold a PEM private key.") from None

    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CAError(f"{cert_path} is not a CA certificate (its basic constraints do not say CA).")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise CAError(f"{cert_path} may not sign certificates (its key usage lacks keyCertSign).")
    except x509.ExtensionNotFound:
        pass  # RFC 5280 lets a CA omit key usage; then it may sign.
    problem = _key_problem(cert.public_key(), "The CA certificate")
    if problem:
        raise CAError(problem)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CAError(f"The key in {key_path} does not belong to the certificate in {cert_path}.")
    now = timezone.now()
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise CAError(f"{cert_path} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                      f"{cert.not_valid_after_utc:%Y-%m-%d}).")
    return cert, key


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the first byte on (never readable by others, whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


def _install_ca_files(cert: x509.Certificate, key: CertificateIssuerPrivateKeyTypes) -> None:
    """Write the root into ``DATA_DIR/ca`` atomically: built in a private temporary directory, then
    renamed into place, so two processes racing to create a CA cannot mix one's key with the other's
    certificate. The loser's rename fails because the directory is no longer empty."""
    data_dir = Path(settings.DATA_DIR)
    staging = Path(tempfile.mkdtemp(prefix=".ca-", dir=data_dir))  # mode 0700
    try:
        _write_private(
            staging / "ca.key",
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
        )
        (staging / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        os.chmod(staging / "ca.crt", 0o644)
        try:
            os.rename(staging, _ca_dir())
        except OSError:
            if ca_exists() and _fingerprint(_load_ca_certificate()) == _fingerprint(cert):
                return  # another process adopted the same CA at the same moment
            if ca_exists():
                raise CAError("Another certificate authority was created at the same time; keeping it.") from None
            raise CAError(f"{_ca_dir()} exists but does not hold a complete CA (ca.crt and ca.key); "
                          "restore or remove it first.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def init_ca(*, common_name: str = "WVD Root CA", cert_path: Path | None = None,
            key_path: Path | None = None) -> Certificate:
    """Create the root CA once, or adopt an existing one from ``cert_path`` and ``key_path``.

    Raises CAError when a CA already exists, unless the files given are that same CA (then the call
    just returns its record, so adopting is idempotent).
    """
    if (cert_path is None) != (key_path is None):
        raise CAError("To adopt a CA give both its certificate and its key file.")
    if cert_path is None:
        _check_common_name(common_name)
        if ca_exists():
            current = _load_ca_certificate()
            raise CAError(f"A certificate authority already exists ({current.subject.rfc4514_string()}, "
                          f"valid until {current.not_valid_after_utc:%Y-%m-%d}).")
        key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_BITS)
        cert = _build_root(key, common_name)
    else:
        cert, key = _read_ca_files(Path(cert_path), Path(key_path))
        if ca_exists():
            current = _load_ca_certificate()
            if _fingerprint(current) == _fingerprint(cert):
                return ca_record()
            raise CAError(f"A different certificate authority already exists ({current.subject.rfc4514_string()}); "
                          "this installation keeps one CA.")
    _install_ca_files(cert, key)
    record = ca_record()
    logger.info("Certificate authority %s installed (%s, fingerprint %s)", record.subject,
                "adopted" if cert_path else "created", record.fingerprint_sha256)
    return record


def ensure_ca() -> Certificate:
    """The root's record, creating the CA first when there is none (for `make run` and tests)."""
    if not ca_exists():
        try:
            return init_ca()
        except CAError:
            if not ca_exists():  # not a lost race: a real problem
                raise
    return ca_record()


# --- issuing ---------------------------------------------------------------------------------------


def _random_serial() -> int:
    # 128 random bits (RFC 5280 allows up to 20 octets); never zero, which is not a valid serial.
    return int.from_bytes(secrets.token_bytes(16), "big") or 1


def _general_names(names: Sequence[str], *, dns_form_of_addresses: bool = False) -> list[x509.GeneralName]:
    """DNS names and IP addresses for a SubjectAlternativeName, validated.

    With ``dns_form_of_addresses`` (TLS-server certificates) an IP address is named twice: as an IP
    SAN, which browsers and Python check, and as a DNS SAN holding the address's text, because FreeRDP's
    name check reads the common name and DNS SANs only, never IP SANs (docs/PROTOCOLS §7)."""
    if isinstance(names, str):
        raise CAError("dns_names must be a list of names, not a single string.")
    result: list[x509.GeneralName] = []
    for name in names:
        if not isinstance(name, str):
            raise CAError(f"{name!r} is not a host name or IP address.")
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            if not _DNS_NAME.fullmatch(name):
                raise CAError(f"{name!r} is not a valid host name or IP address.") from None
            generals: list[x509.GeneralName] = [x509.DNSName(name.lower())]
        else:
            generals = [x509.IPAddress(address)]
            if dns_form_of_addresses:
                generals.append(x509.DNSName(str(address)))
        result.extend(general for general in generals if general not in result)
    return result


def _server_names(purpose: CertificatePurpose, names: Sequence[str]) -> list[x509.GeneralName]:
    """The SANs of a certificate of ``purpose`` naming ``names``: a TLS server's with the DNS form of
    its addresses."""
    return _general_names(names, dns_form_of_addresses=purpose in SERVER_AUTH_PURPOSES)


def _check_purpose(purpose: str, allowed: Sequence[str]) -> CertificatePurpose:
    if purpose not in allowed:
        raise CAError(f"Certificates for purpose {purpose!r} are not issued here "
                      f"(expected one of {', '.join(allowed)}).")
    return CertificatePurpose(purpose)


def _lifetime(purpose: CertificatePurpose, lifetime: timedelta | None) -> timedelta:
    value = settings.CERTIFICATE_LIFETIMES[purpose] if lifetime is None else lifetime
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise CAError(f"A certificate lifetime must be a positive duration, not {value!r}.")
    return value


def _record_fields(cert: x509.Certificate, purpose: str) -> dict:
    return {
        "serial_number": serial_hex(cert),
        "subject": cert.subject.rfc4514_string()[:500],
        "common_name": _common_name_of(cert),
        "purpose": purpose,
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


def _issue(public_key, purpose: CertificatePurpose, common_name: str, names: list[x509.GeneralName],
           lifetime: timedelta) -> Certificate:
    """Sign a leaf for ``public_key`` with the extensions of ``purpose`` and record it."""
    ca_cert, ca_key = _load_ca()
    now = timezone.now()
    # A leaf never outlives the root that vouches for it.
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(_random_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                # TLS servers with RSA keys may be asked for RSA key transport by old clients.
                key_encipherment=is_rsa and purpose in SERVER_AUTH_PURPOSES,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([_EXTENDED_KEY_USAGE[purpose]]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    record = Certificate.objects.create(fingerprint_sha256=_fingerprint(cert), **_record_fields(cert, purpose))
    logger.info("Issued %s certificate for %s (serial %s, valid until %s)",
                purpose, common_name, record.serial_number, record.not_after.isoformat())
    return record


def _check_server_names(purpose: CertificatePurpose, names: list[x509.GeneralName]) -> None:
    if purpose in SERVER_AUTH_PURPOSES and not names:
        raise CAError(f"A {purpose} certificate needs at least one DNS name or IP address.")


def _reject(message: str) -> CSRRejected:
    logger.warning("Certificate request refused: %s", message)
    return CSRRejected(message)


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    if isinstance(csr_pem, str):
        csr_pem = csr_pem.encode("utf-8", "replace")
    if not isinstance(csr_pem, bytes) or not csr_pem.strip():
        raise _reject("The certificate request is empty.")
    if len(csr_pem) > MAX_PEM_BYTES:
        raise _reject(f"The certificate request is larger than {MAX_PEM_BYTES} bytes.")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        signature_ok = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise _reject("The certificate request is not a valid PEM-encoded CSR.") from None
    if not signature_ok:
        raise _reject("The certificate request's signature does not match its key.")
    problem = _key_problem(public_key, "The certificate request")
    if problem:
        raise _reject(problem)
    return csr


def issue_from_csr(csr_pem: bytes, purpose: str, *, common_name: str, dns_names: Sequence[str] = (),
                   lifetime: timedelta | None = None, renews: Certificate | None = None) -> Certificate:
    """Issue a certificate for the key in a CSR, after checking the CSR.

    The CSR must parse, be signed by its own key, carry an RSA (>= 2048 bits) or EC P-256/P-384 key,
    name exactly ``common_name`` and request no subject alternative name outside ``dns_names``. The
    certificate is built from our arguments, never copied from the request. ``renews`` (an addition
    to the contract) marks the certificate this one replaces, for the agent's renewal flow.
    Raises CSRRejected (nothing issued or recorded) or CAError for arguments the caller got wrong.
    """
    purpose_value = _check_purpose(purpose, LEAF_PURPOSES)
    _check_common_name(common_name)
    names = _server_names(purpose_value, dns_names)
    _check_server_names(purpose_value, names)
    validity = _lifetime(purpose_value, lifetime)

    csr = _load_csr(csr_pem)
    requested_cns = [attr.value for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if requested_cns != [common_name]:
        shown = ", ".join(map(str, requested_cns)) or "none"
        raise _reject(f"The certificate request names {shown!r} but must name exactly {common_name!r}.")
    try:
        requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        requested = []
    except ValueError:
        raise _reject("The certificate request has malformed extensions.") from None
    for general in requested:
        if isinstance(general, x509.DNSName):
            general = x509.DNSName(general.value.lower())
        if general not in names:
            raise _reject(f"The certificate request asks for the name {general.value!r}, which is not allowed here.")

    with transaction.atomic():
        record = _issue(csr.public_key(), purpose_value, common_name, names, validity)
        if renews is not None:
            Certificate.objects.filter(pk=renews.pk).update(renewed_by=record)
            renews.renewed_by = record
    return record


def issue_key_and_certificate(purpose: str, *, common_name: str, dns_names: Sequence[str] = (),
                              lifetime: timedelta | None = None) -> tuple[Certificate, bytes]:
    """Make a key pair and a certificate for a server-side purpose (feed-signing, gateway-tls,
    host-rdp). Returns the record and the private key as unencrypted PKCS#8 PEM; the caller decides
    where the key lives (``store_server_key`` keeps it under DATA_DIR/keys/)."""
    purpose_value = _check_purpose(purpose, SERVER_SIDE_PURPOSES)
    _check_common_name(common_name)
    names = _server_names(purpose_value, dns_names)
    _check_server_names(purpose_value, names)
    validity = _lifetime(purpose_value, lifetime)
    key = rsa.generate_private_key(public_exponent=65537, key_size=SERVER_KEY_BITS)
    record = _issue(key.public_key(), purpose_value, common_name, names, validity)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return record, key_pem


# --- server-side keys --------------------------------------------------------------------------------


def _keys_dir() -> Path:
    path = Path(settings.DATA_DIR) / "keys"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def server_key_path(certificate: Certificate) -> Path:
    """Where the private key of a server-side certificate is kept (it may not exist)."""
    return Path(settings.DATA_DIR) / "keys" / f"{certificate.serial_number}.key"


def has_server_key(certificate: Certificate) -> bool:
    return server_key_path(certificate).is_file()


def store_server_key(certificate: Certificate, key_pem: bytes) -> Path:
    """Keep the private key of a server-side certificate in ``DATA_DIR/keys/<serial>.key`` (0600)."""
    if certificate.purpose not in SERVER_SIDE_PURPOSES:
        raise CAError(f"Keys of {certificate.purpose} certificates are never kept on the server.")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CAError("The key to store is not an unencrypted PEM private key.") from None
    cert = x509.load_pem_x509_certificate(certificate.pem.encode())
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CAError(f"The key does not belong to certificate {certificate.serial_number}.")
    path = _keys_dir() / f"{certificate.serial_number}.key"
    # Written to a private temporary name, then renamed: a reader never sees half a key.
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    _write_private(staging, key_pem)
    os.replace(staging, path)
    return path


def _san_entries(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _san_values(cert: x509.Certificate) -> list[str]:
    """The names a certificate was issued for, each once (an address and its DNS form are one name)."""
    return list(dict.fromkeys(str(general.value) for general in _san_entries(cert)))


def _default_subject(purpose: CertificatePurpose, common_name: str | None,
                     dns_names: Sequence[str] | None) -> tuple[str, list[str]]:
    if common_name is not None:
        return common_name, list(dns_names) if dns_names is not None else (
            [common_name] if purpose in SERVER_AUTH_PURPOSES else [])
    if purpose == CertificatePurpose.FEED_SIGNING:
        return settings.FEED_SIGNING_COMMON_NAME, list(dns_names or [])
    if purpose == CertificatePurpose.GATEWAY_TLS:
        # The first name is the public host (core.environment.gateway_addresses): the common name.
        names = list(dns_names) if dns_names is not None else list(settings.GATEWAY_TLS_NAMES)
        return settings.GATEWAY_TLS_NAMES[0], names
    raise CAError("A host-rdp certificate names one session host: pass its common_name (and dns_names).")


def load_server_credentials(purpose: str, *, common_name: str | None = None,
                            dns_names: Sequence[str] | None = None):
    """The newest valid (x509.Certificate, private key) for a server-side purpose, issuing one when
    none exists.

    Without ``common_name`` the subject comes from settings (FEED_SIGNING_COMMON_NAME,
    GATEWAY_TLS_NAMES); a stored certificate is used only if its SANs cover every one wanted, compared
    by type and value (an IP SAN is not its DNS form), so changing the gateway's names in settings, or
    an older certificate without the DNS form of its addresses, yields a new certificate.
    """
    purpose_value = _check_purpose(purpose, SERVER_SIDE_PURPOSES)
    cn, names = _default_subject(purpose_value, common_name, dns_names)
    wanted = set(_server_names(purpose_value, names))
    now = timezone.now()
    candidates = Certificate.objects.filter(
        purpose=purpose_value, common_name=cn, revoked_at__isnull=True, not_before__lte=now, not_after__gt=now,
    ).order_by("-not_after", "-id")
    for record in candidates:
        if not has_server_key(record):
            continue
        cert = x509.load_pem_x509_certificate(record.pem.encode())
        if not wanted <= set(_san_entries(cert)):
            continue
        try:
            key = serialization.load_pem_private_key(server_key_path(record).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("Skipping certificate %s: its stored key cannot be read (%s)", record.serial_number, exc)
            continue
        return cert, key
    record, key_pem = issue_key_and_certificate(purpose_value, common_name=cn, dns_names=names)
    store_server_key(record, key_pem)
    return (x509.load_pem_x509_certificate(record.pem.encode()),
            serialization.load_pem_private_key(key_pem, password=None))


# --- verification, revocation, renewal ---------------------------------------------------------------


def _refuse(message: str, code: str, detail: str = "") -> CertificateRefused:
    logger.info("Certificate refused (%s)%s: %s", code, f" {detail}" if detail else "", message)
    return CertificateRefused(message, code=code)


def verify_certificate(cert_pem: bytes, purpose: str, *, now: datetime | None = None) -> Certificate:
    """The record of a presented certificate, if it chains to our CA (signature checked), is valid
    at ``now`` (default: the current time), is recorded, not revoked, and issued for ``purpose``.
    Raises CertificateRefused otherwise."""
    if isinstance(cert_pem, str):
        cert_pem = cert_pem.encode("utf-8", "replace")
    if not isinstance(cert_pem, bytes) or len(cert_pem) > MAX_PEM_BYTES:
        raise _refuse("The certificate is missing or too large.", "malformed")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise _refuse("The certificate is not a valid PEM-encoded certificate.", "malformed") from None
    try:
        ca_cert = _load_ca_certificate()
    except CAError as exc:
        raise _refuse(str(exc), "no_ca") from None
    serial = serial_hex(cert)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise _refuse("The certificate was not issued by this installation's CA.", "untrusted", serial) from None
    moment = now or timezone.now()
    if moment < cert.not_valid_before_utc:
        raise _refuse("The certificate is not valid yet.", "not_yet_valid", serial)
    if moment >= cert.not_valid_after_utc:
        raise _refuse(f"The certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC.", "expired", serial)
    record = Certificate.objects.filter(fingerprint_sha256=_fingerprint(cert)).first()
    if record is None:
        raise _refuse("The certificate is not one this CA has on record.", "unknown", serial)
    if record.revoked_at is not None:
        raise _refuse("The certificate has been revoked.", "revoked", serial)
    if record.purpose != purpose:
        raise _refuse(f"The certificate is for {record.purpose}, not {purpose}.", "wrong_purpose", serial)
    return record


def revoke(certificate: Certificate, reason: str) -> None:
    """Revoke a leaf certificate: from now on verification refuses it and it is never renewed. The
    first revocation's time and reason are kept; a stored server-side key is deleted."""
    if certificate.purpose == CertificatePurpose.CA:
        raise CAError("The root CA cannot be revoked; replace the CA instead.")
    now = timezone.now()
    updated = Certificate.objects.filter(pk=certificate.pk, revoked_at__isnull=True).update(
        revoked_at=now, revocation_reason=(reason or "")[:200]
    )
    if updated:
        certificate.revoked_at, certificate.revocation_reason = now, (reason or "")[:200]
        logger.info("Revoked %s certificate %s for %s: %s", certificate.purpose, certificate.serial_number,
                    certificate.common_name, reason)
    server_key_path(certificate).unlink(missing_ok=True)


def renew(certificate: Certificate) -> Certificate:
    """Issue the successor of a server-side certificate (same subject and names, new key, stored
    under DATA_DIR/keys/) and link it through ``renewed_by``. Renewing twice returns the same
    successor. Host-agent certificates, and any whose key is not kept here, need a new CSR instead."""
    if certificate.purpose == CertificatePurpose.HOST_AGENT:
        raise CAError("A host-agent certificate is renewed with a new CSR from its agent; "
                      "order a renewal over the host channel.")
    if certificate.purpose == CertificatePurpose.CA:
        raise CAError("The root CA is not renewed automatically; adopt or create a new CA with initca.")
    with transaction.atomic():
        # Lock the row so two renewal runs cannot both issue a successor.
        current = Certificate.objects.select_for_update().filter(pk=certificate.pk).first()
        if current is None:
            raise CAError(f"Certificate {certificate.serial_number} no longer exists.")
        if current.renewed_by_id is not None:
            return Certificate.objects.get(pk=current.renewed_by_id)
        if current.revoked_at is not None:
            raise CAError(f"Certificate {current.serial_number} is revoked; revoked certificates are not renewed.")
        if not has_server_key(current):
            raise CAError(f"The key of certificate {current.serial_number} is not kept on this server; "
                          "its holder must send a new CSR.")
        cert = x509.load_pem_x509_certificate(current.pem.encode())
        successor, key_pem = issue_key_and_certificate(
            current.purpose, common_name=current.common_name, dns_names=_san_values(cert)
        )
        store_server_key(successor, key_pem)
        Certificate.objects.filter(pk=current.pk).update(renewed_by=successor)
    certificate.renewed_by = successor
    logger.info("Renewed %s certificate %s as %s", certificate.purpose, certificate.serial_number,
                successor.serial_number)
    return successor


def certificates_due_for_renewal(purpose: str, *, now: datetime | None = None) -> QuerySet[Certificate]:
    """Certificates of ``purpose`` that are still valid but expire within
    settings.CERTIFICATE_RENEWAL_WINDOW, not revoked and not renewed yet. Expired ones are left out
    on purpose: nothing renews a certificate of a host that is gone."""
    moment = now or timezone.now()
    return Certificate.objects.filter(
        purpose=purpose, revoked_at__isnull=True, renewed_by__isnull=True,
        not_after__gt=moment, not_after__lte=moment + settings.CERTIFICATE_RENEWAL_WINDOW,
    ).order_by("not_after", "id")


def renew_due_certificates() -> tuple[list[Certificate], list[Certificate]]:
    """Renew every due certificate whose key we keep; return (renewed successors, certificates whose
    holder must send a new CSR — host agents, and hosts that made their own host-rdp key)."""
    renewed: list[Certificate] = []
    needs_csr: list[Certificate] = list(certificates_due_for_renewal(CertificatePurpose.HOST_AGENT))
    for purpose in SERVER_SIDE_PURPOSES:
        for certificate in certificates_due_for_renewal(purpose):
            if not has_server_key(certificate):
                needs_csr.append(certificate)
                continue
            try:
                renewed.append(renew(certificate))
            except CAError as exc:  # revoked or deleted since the query: nothing to renew
                logger.warning("Not renewing certificate %s: %s", certificate.serial_number, exc)
    for certificate in needs_csr:
        logger.warning("The %s certificate of %s (serial %s) expires %s; its holder must send a new CSR",
                       certificate.purpose, certificate.common_name, certificate.serial_number,
                       certificate.not_after.isoformat())
    return renewed, needs_csr
