"""Sign .rdp files exactly like Windows' rdpsign.exe, and check such signatures.

mstsc and the Windows Remote Desktop clients show the publisher of a signed file instead of the
"unknown publisher" warning. The format (PROTOCOLS.md §2) is: a fixed table of signable settings,
a UTF-16LE message over the signed lines and the ``signscope`` line, a detached CMS SignedData
(SHA-256, no signed attributes) behind a 12-byte header, base64 in 64-character chunks.

Pure functions over text and bytes; no Django. The file's bytes and lines follow wire.rdpfile.
"""
from __future__ import annotations

import base64
import binascii
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from wire import rdpfile

logger = logging.getLogger(__name__)

# The signable settings in signscope order: (line prefix, display name). rdpsign.exe walks this
# table in order and signs every line that starts with the prefix (case-insensitively). The two
# "expand" settings are typed :s: here although real files write them as :i: — every known
# implementation has this quirk, so such lines are never signed, and we keep it to match.
SIGNABLE_SETTINGS: tuple[tuple[str, str], ...] = (
    ("full address:s:", "Full Address"),
    ("alternate full address:s:", "Alternate Full Address"),
    ("pcb:s:", "PCB"),
    ("use redirection server name:i:", "Use Redirection Server Name"),
    ("server port:i:", "Server Port"),
    ("negotiate security layer:i:", "Negotiate Security Layer"),
    ("enablecredsspsupport:i:", "EnableCredSspSupport"),
    ("disableconnectionsharing:i:", "DisableConnectionSharing"),
    ("autoreconnection enabled:i:", "AutoReconnection Enabled"),
    ("gatewayhostname:s:", "GatewayHostname"),
    ("gatewayusagemethod:i:", "GatewayUsageMethod"),
    ("gatewayprofileusagemethod:i:", "GatewayProfileUsageMethod"),
    ("gatewaycredentialssource:i:", "GatewayCredentialsSource"),
    ("support url:s:", "Support URL"),
    ("promptcredentialonce:i:", "PromptCredentialOnce"),
    ("require pre-authentication:i:", "Require pre-authentication"),
    ("pre-authentication server address:s:", "Pre-authentication server address"),
    ("alternate shell:s:", "Alternate Shell"),
    ("shell working directory:s:", "Shell Working Directory"),
    ("remoteapplicationprogram:s:", "RemoteApplicationProgram"),
    ("remoteapplicationexpandworkingdir:s:", "RemoteApplicationExpandWorkingdir"),
    ("remoteapplicationmode:i:", "RemoteApplicationMode"),
    ("remoteapplicationguid:s:", "RemoteApplicationGuid"),
    ("remoteapplicationname:s:", "RemoteApplicationName"),
    ("remoteapplicationicon:s:", "RemoteApplicationIcon"),
    ("remoteapplicationfile:s:", "RemoteApplicationFile"),
    ("remoteapplicationfileextensions:s:", "RemoteApplicationFileExtensions"),
    ("remoteapplicationcmdline:s:", "RemoteApplicationCmdLine"),
    ("remoteapplicationexpandcmdline:s:", "RemoteApplicationExpandCmdLine"),
    ("prompt for credentials:i:", "Prompt For Credentials"),
    ("authentication level:i:", "Authentication Level"),
    ("audiomode:i:", "AudioMode"),
    ("redirectdrives:i:", "RedirectDrives"),
    ("redirectprinters:i:", "RedirectPrinters"),
    ("redirectcomports:i:", "RedirectCOMPorts"),
    ("redirectsmartcards:i:", "RedirectSmartCards"),
    ("redirectposdevices:i:", "RedirectPOSDevices"),
    ("redirectclipboard:i:", "RedirectClipboard"),
    ("devicestoredirect:s:", "DevicesToRedirect"),
    ("drivestoredirect:s:", "DrivesToRedirect"),
    ("loadbalanceinfo:s:", "LoadBalanceInfo"),
    ("redirectdirectx:i:", "RedirectDirectX"),
    ("rdgiskdcproxy:i:", "RDGIsKDCProxy"),
    ("kdcproxyname:s:", "KDCProxyName"),
    ("eventloguploadaddress:s:", "EventLogUploadAddress"),
    ("enablerdsaadauth:i:", "EnableRdsAadAuth"),
    ("redirectwebauthn:i:", "RedirectWebAuthn"),
)

_SIGNABLE_PREFIXES = tuple(prefix for prefix, _ in SIGNABLE_SETTINGS)
SIGNSCOPE_PREFIX = "signscope:s:"
SIGNATURE_PREFIX = "signature:s:"
# The 12-byte header before the CMS blob: two constant DWORDs (meaning unknown) and the length.
SIGNATURE_HEADER_MAGIC = (0x00010001, 0x00000001)
SIGNATURE_CHUNK = 64
MAX_RDP_LINES = 5000

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class RdpSignatureError(ValueError):
    """A file or signature that cannot be signed or does not verify; the message says why."""


@dataclass(frozen=True)
class SignScope:
    """What signing covers: all settings of the file, the signed ones and their display names."""

    settings: tuple[str, ...]
    signed_lines: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def line(self) -> str:
        return SIGNSCOPE_PREFIX + ",".join(self.names)


# --- signing --------------------------------------------------------------------------------


def _split_lines(text_or_lines: str | Iterable[str]) -> list[str]:
    """The file's non-blank lines, stripped (wire.rdpfile), refusing a NUL, which would make the signed
    message ambiguous."""
    if isinstance(text_or_lines, str):
        raw = rdpfile.split_lines(text_or_lines, keep_blank=True)
    else:
        raw = list(text_or_lines)
        for line in raw:
            if not isinstance(line, str) or "\r" in line or "\n" in line:
                raise RdpSignatureError(f"each line must be a string without line breaks, got {line!r:.80}")
    lines = []
    for line in raw:
        if "\0" in line:
            # The message ends with a NUL; a NUL inside a setting would make it ambiguous.
            raise RdpSignatureError(f"a line contains a NUL character: {line!r:.80}")
        line = line.strip()
        if line:
            lines.append(line)
    return lines


def _setting_key(line: str) -> str:
    """What a client reads the line as (its lower-case setting name, wire.rdpfile); a line that is not a
    setting stands for itself."""
    setting = rdpfile.parse_line(line)
    return setting.name if setting is not None else line.lower()


def _signable(line: str) -> bool:
    """Whether the line sets a signable setting, as rdpsign.exe matches it (the exact prefix) or as a
    client reads it (the parsed name and type: ``Full Address :s:x`` is the full address too)."""
    setting = rdpfile.parse_line(line)
    return line.lower().startswith(_SIGNABLE_PREFIXES) or (
        setting is not None and f"{setting.name}:{setting.type.lower()}:" in _SIGNABLE_PREFIXES)


def _prepare_settings(text_or_lines: str | Iterable[str]) -> list[str]:
    """Steps 1-2 of §2.1: drop old signature lines, de-duplicate, add the alternate full address."""
    lines = [
        line for line in _split_lines(text_or_lines)
        if not line.lower().startswith((SIGNSCOPE_PREFIX, SIGNATURE_PREFIX))
    ]
    # A repeated setting would be signed twice and read once; keep the last value, at the place
    # of the first occurrence (what raweb does, compared against rdpsign.exe).
    last: dict[str, str] = {}
    order: list[str] = []
    for line in lines:
        key = _setting_key(line)
        if key not in last:
            order.append(key)
        last[key] = line
    settings = [last[key] for key in order]

    full_address = next((s[len("full address:s:"):] for s in settings
                         if s.lower().startswith("full address:s:")), "")
    has_alternate = any(s.lower().startswith("alternate full address:s:") for s in settings)
    if full_address and not has_alternate:
        # rdpsign.exe adds it so that an unsigned alternate address cannot override the signed one.
        settings.append("alternate full address:s:" + full_address)
    return settings


def signing_message(text_or_lines: str | Iterable[str]) -> tuple[SignScope, bytes]:
    """The settings, signscope and the exact bytes rdpsign.exe signs for this file (§2.1 steps 1-4)."""
    settings = _prepare_settings(text_or_lines)
    signed_lines: list[str] = []
    names: list[str] = []
    for prefix, name in SIGNABLE_SETTINGS:
        for setting in settings:
            if setting.lower().startswith(prefix):
                signed_lines.append(setting)
                names.append(name)
    if "Full Address" not in names:
        raise RdpSignatureError("nothing to sign: the file has no 'full address:s:' setting")
    scope = SignScope(tuple(settings), tuple(signed_lines), tuple(names))
    return scope, _message_bytes(signed_lines, scope.line)


def _message_bytes(signed_lines: Iterable[str], signscope_line: str) -> bytes:
    text = "\r\n".join(signed_lines) + "\r\n" + signscope_line + "\r\n" + "\0"
    return text.encode("utf-16-le")


def signature_blob(message: bytes, certificate: x509.Certificate, private_key: PrivateKey) -> bytes:
    """The 12-byte header and a detached CMS SignedData over ``message`` (SHA-256, no attributes)."""
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(message)
        .add_signer(certificate, private_key, hashes.SHA256())
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoAttributes, pkcs7.PKCS7Options.Binary],
        )
    )
    return struct.pack("<III", *SIGNATURE_HEADER_MAGIC, len(der)) + der


def format_signature_value(blob: bytes) -> str:
    """Base64 in 64-character chunks, each followed by two spaces (also the last), as rdpsign.exe writes."""
    encoded = base64.b64encode(blob).decode("ascii")
    return "".join(encoded[i:i + SIGNATURE_CHUNK] + "  " for i in range(0, len(encoded), SIGNATURE_CHUNK))


def sign_rdp(text_or_lines: str | Iterable[str], certificate: x509.Certificate, private_key: PrivateKey) -> str:
    """The signed file: all settings, then ``signscope`` and ``signature`` lines, CRLF line ends."""
    scope, message = signing_message(text_or_lines)
    value = format_signature_value(signature_blob(message, certificate, private_key))
    lines = [*scope.settings, scope.line, SIGNATURE_PREFIX + value]
    return "".join(line + "\r\n" for line in lines)


# --- verification ---------------------------------------------------------------------------
# cryptography can build CMS signatures but not verify them, so the SignedData is read with the
# small DER reader below. It accepts only what a CMS signer emits (definite lengths, one signer).

_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_DIGESTS = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
_SIGNATURE_ALGORITHMS_RSA = {
    "1.2.840.113549.1.1.1",  # rsaEncryption, what CMS signers usually write
    "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13",
}
_SIGNATURE_ALGORITHMS_EC = {"1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"}


@dataclass(frozen=True)
class _Tlv:
    tag: int
    raw: bytes  # the whole element, header included
    content: bytes


def _read_tlv(data: bytes, offset: int) -> tuple[_Tlv, int]:
    if offset + 2 > len(data):
        raise RdpSignatureError("the CMS structure is truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise RdpSignatureError("the CMS structure uses a multi-byte tag")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise RdpSignatureError("the CMS structure is not DER (indefinite or huge length)")
        if pos + count > len(data):
            raise RdpSignatureError("the CMS structure is truncated")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise RdpSignatureError("the CMS structure is truncated")
    return _Tlv(tag, data[offset:end], data[pos:end]), end


def _children(content: bytes) -> list[_Tlv]:
    items, offset = [], 0
    while offset < len(content):
        item, offset = _read_tlv(content, offset)
        items.append(item)
    return items


def _expect(tlv: _Tlv, tag: int, what: str) -> _Tlv:
    if tlv.tag != tag:
        raise RdpSignatureError(f"the CMS structure has an unexpected {what}")
    return tlv


def _oid(tlv: _Tlv) -> str:
    _expect(tlv, 0x06, "object identifier")
    body = tlv.content
    if not body:
        raise RdpSignatureError("the CMS structure has an empty object identifier")
    if body[-1] & 0x80:
        raise RdpSignatureError("the CMS structure has a truncated object identifier")
    parts, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = min(parts[0] // 40, 2)
    return ".".join(str(p) for p in [first, parts[0] - 40 * first, *parts[1:]])


@dataclass(frozen=True)
class _SignerInfo:
    issuer: bytes
    serial: int
    digest_oid: str
    signed_attrs: _Tlv | None
    signature_oid: str
    signature: bytes


def _parse_signed_data(der: bytes) -> tuple[list[x509.Certificate], set[str], _SignerInfo]:
    content_info, end = _read_tlv(der, 0)
    if end != len(der):
        raise RdpSignatureError("the CMS structure has trailing bytes")
    outer = _children(_expect(content_info, 0x30, "outer element").content)
    if len(outer) != 2 or _oid(outer[0]) != _OID_SIGNED_DATA:
        raise RdpSignatureError("the signature is not a CMS SignedData")
    wrapped = _children(_expect(outer[1], 0xA0, "content wrapper").content)
    signed_data = _children(_expect(wrapped[0], 0x30, "SignedData").content)
    if len(signed_data) < 4:
        raise RdpSignatureError("the SignedData is incomplete")
    if _expect(signed_data[0], 0x02, "version").content not in (b"\x01", b"\x03"):
        raise RdpSignatureError("the SignedData has an unknown version")
    digest_oids = {_oid(_children(_expect(algorithm, 0x30, "digest algorithm").content)[0])
                   for algorithm in _children(_expect(signed_data[1], 0x31, "digest algorithm set").content)}
    encap = _children(_expect(signed_data[2], 0x30, "encapsulated content").content)
    if not encap or _oid(encap[0]) != _OID_DATA:
        raise RdpSignatureError("the SignedData does not sign plain data")
    if len(encap) > 1:
        raise RdpSignatureError("the signature is not detached (it carries its content)")
    certificates: list[x509.Certificate] = []
    rest = signed_data[3:]
    if rest and rest[0].tag == 0xA0:
        for item in _children(rest[0].content):
            try:
                certificates.append(x509.load_der_x509_certificate(item.raw))
            except (ValueError, x509.InvalidVersion):
                raise RdpSignatureError("the SignedData holds an unreadable certificate") from None
        rest = rest[1:]
    if rest and rest[0].tag == 0xA1:
        rest = rest[1:]  # CRLs: not used by .rdp signatures
    if len(rest) != 1:
        raise RdpSignatureError("the SignedData has no signer information")
    signers = _children(_expect(rest[0], 0x31, "signer set").content)
    if len(signers) != 1:
        raise RdpSignatureError(f"the SignedData has {len(signers)} signers, expected exactly one")
    fields = _children(_expect(signers[0], 0x30, "signer").content)
    if len(fields) < 5:
        raise RdpSignatureError("the signer information is incomplete")
    if _expect(fields[0], 0x02, "signer version").content != b"\x01":
        raise RdpSignatureError("the signer information has an unsupported version")
    sid = _children(_expect(fields[1], 0x30, "signer identifier (only issuer and serial are supported)").content)
    if len(sid) != 2:
        raise RdpSignatureError("the signer identifier is malformed")
    serial = int.from_bytes(_expect(sid[1], 0x02, "serial number").content, "big", signed=True)
    digest_oid = _oid(_children(_expect(fields[2], 0x30, "digest algorithm").content)[0])
    index = 3
    signed_attrs = None
    if fields[index].tag == 0xA0:
        signed_attrs = fields[index]
        index += 1
    if len(fields) < index + 2:
        raise RdpSignatureError("the signer information is incomplete")
    signature_oid = _oid(_children(_expect(fields[index], 0x30, "signature algorithm").content)[0])
    signature = _expect(fields[index + 1], 0x04, "signature value").content
    return certificates, digest_oids, _SignerInfo(sid[0].raw, serial, digest_oid, signed_attrs, signature_oid,
                                                  signature)


def _signed_bytes(signer: _SignerInfo, message: bytes, digest: hashes.HashAlgorithm) -> bytes:
    """What the signer's key signed: the message itself, or the signed attributes (RFC 5652 §5.4)."""
    if signer.signed_attrs is None:
        return message
    attributes: dict[str, bytes] = {}
    for attribute in _children(signer.signed_attrs.content):
        parts = _children(_expect(attribute, 0x30, "attribute").content)
        values = _children(_expect(parts[1], 0x31, "attribute values").content) if len(parts) == 2 else []
        if len(values) != 1:
            raise RdpSignatureError("a signed attribute is malformed")
        attributes[_oid(parts[0])] = values[0].raw
    content_type = attributes.get(_OID_CONTENT_TYPE)
    if content_type is None or _oid(_read_tlv(content_type, 0)[0]) != _OID_DATA:
        raise RdpSignatureError("the signed attributes lack the content type")
    message_digest = attributes.get(_OID_MESSAGE_DIGEST)
    hasher = hashes.Hash(digest)
    hasher.update(message)
    if message_digest is None or _read_tlv(message_digest, 0)[0].content != hasher.finalize():
        raise RdpSignatureError("the message digest does not match the file's signed settings")
    # The signature covers the attributes re-tagged as a SET OF.
    return b"\x31" + signer.signed_attrs.raw[1:]


def _verify_cms(der: bytes, message: bytes, ca_cert: x509.Certificate, at: datetime) -> x509.Certificate:
    """Check the CMS signature; any parse failure of the untrusted bytes becomes RdpSignatureError."""
    try:
        return _verify_cms_unguarded(der, message, ca_cert, at)
    except RdpSignatureError:
        raise
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        # IndexError: an element with fewer children than CMS requires; the others come from
        # cryptography reading a damaged certificate lazily.
        raise RdpSignatureError(f"the signature is malformed ({type(exc).__name__})") from None


def _verify_cms_unguarded(der: bytes, message: bytes, ca_cert: x509.Certificate, at: datetime) -> x509.Certificate:
    certificates, digest_oids, signer = _parse_signed_data(der)
    digest_class = _DIGESTS.get(signer.digest_oid)
    if signer.digest_oid not in digest_oids:
        raise RdpSignatureError("the SignedData does not list the signer's digest algorithm")
    if digest_class is None:
        raise RdpSignatureError(f"the digest algorithm {signer.digest_oid} is not accepted (use SHA-256)")
    signer_cert = next(
        (c for c in certificates
         if c.serial_number == signer.serial and c.issuer.public_bytes() == signer.issuer), None)
    if signer_cert is None:
        raise RdpSignatureError("the signer's certificate is not in the signature")
    signed = _signed_bytes(signer, message, digest_class())
    public_key = signer_cert.public_key()
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and signer.signature_oid in _SIGNATURE_ALGORITHMS_RSA:
            public_key.verify(signer.signature, signed, padding.PKCS1v15(), digest_class())
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and signer.signature_oid in _SIGNATURE_ALGORITHMS_EC:
            public_key.verify(signer.signature, signed, ec.ECDSA(digest_class()))
        else:
            raise RdpSignatureError(f"the signature algorithm {signer.signature_oid} is not supported")
    except InvalidSignature:
        raise RdpSignatureError("the signature does not match the file's signed settings") from None

    if signer_cert != ca_cert:
        try:
            signer_cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise RdpSignatureError("the signer's certificate was not issued by the trusted CA") from None
    if not signer_cert.not_valid_before_utc <= at <= signer_cert.not_valid_after_utc:
        raise RdpSignatureError("the signer's certificate is not valid at this time")
    return signer_cert


def check_rdp_signature(data: bytes, ca_cert: x509.Certificate, *, at: datetime | None = None) -> x509.Certificate:
    """Verify a signed .rdp file against ``ca_cert``; returns the signer's certificate.

    Raises RdpSignatureError naming the first problem. Besides the CMS signature it checks what a
    careful client must: every signable setting in the file is covered by the signscope, so nothing
    that changes where or how the client connects was added after signing.
    """
    at = at or datetime.now(timezone.utc)
    try:
        text = rdpfile.decode(data)
    except rdpfile.RdpFileFormatError as exc:
        raise RdpSignatureError(str(exc)) from None
    lines = _split_lines(text)
    if len(lines) > MAX_RDP_LINES:
        raise RdpSignatureError(f"the file has more than {MAX_RDP_LINES} lines")
    scopes = [line for line in lines if line.lower().startswith(SIGNSCOPE_PREFIX)]
    signatures = [line for line in lines if line.lower().startswith(SIGNATURE_PREFIX)]
    if len(scopes) != 1 or len(signatures) != 1:
        raise RdpSignatureError("the file needs exactly one signscope and one signature line")
    names = [name for name in scopes[0][len(SIGNSCOPE_PREFIX):].split(",") if name]
    if len(names) > MAX_RDP_LINES // 10:
        raise RdpSignatureError("the signscope names too many settings")
    prefix_of = {name.lower(): prefix for prefix, name in SIGNABLE_SETTINGS}
    settings = [line for line in lines if line not in (scopes[0], signatures[0])]

    used: set[int] = set()
    signed_lines: list[str] = []
    for name in names:
        prefix = prefix_of.get(name.lower())
        if prefix is None:
            raise RdpSignatureError(f"the signscope names an unknown setting {name!r}")
        index = next((i for i, s in enumerate(settings) if i not in used and s.lower().startswith(prefix)), None)
        if index is None:
            raise RdpSignatureError(f"the signscope names {name!r} but the file has no such setting")
        used.add(index)
        signed_lines.append(settings[index])
    unsigned = [s for i, s in enumerate(settings) if i not in used and _signable(s)]
    if unsigned:
        raise RdpSignatureError(f"the signable setting {unsigned[0].split(':', 1)[0]!r} is outside the signscope")

    try:
        blob = base64.b64decode(signatures[0][len(SIGNATURE_PREFIX):].replace(" ", ""), validate=True)
    except (binascii.Error, ValueError):
        raise RdpSignatureError("the signature value is not base64") from None
    if len(blob) < 12:
        raise RdpSignatureError("the signature value is too short")
    magic1, magic2, length = struct.unpack("<III", blob[:12])
    if (magic1, magic2) != SIGNATURE_HEADER_MAGIC or length != len(blob) - 12:
        raise RdpSignatureError("the signature header is not rdpsign's")
    message = _message_bytes(signed_lines, scopes[0])
    return _verify_cms(blob[12:], message, ca_cert, at)


def verify_rdp_signature(data: bytes, ca_cert: x509.Certificate, *, at: datetime | None = None) -> bool:
    """True when ``data`` is an .rdp file signed by ``ca_cert`` or a certificate it issued; the
    reason for a refusal is logged (``check_rdp_signature`` raises it instead)."""
    try:
        check_rdp_signature(data, ca_cert, at=at)
    except RdpSignatureError as exc:
        logger.info("rdp signature refused: %s", exc)
        return False
    return True
