"""Signing .rdp files exactly like rdpsign.exe (PROTOCOLS.md §2), and verifying them."""
from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import subprocess
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from feed.rdpsign import (
    RdpSignatureError,
    check_rdp_signature,
    format_signature_value,
    sign_rdp,
    signing_message,
    verify_rdp_signature,
)
from tests.rdp.conftest import issue_signer
from wire import rdpfile

VECTOR_1 = ["full address:s:myserver", "remoteapplicationmode:i:1"]
# raweb's Sign_MatchesRdpSignExeOutput input, checked against Windows' rdpsign.exe /sha256.
VECTOR_2 = (
    "full address:s:myserver\r\n"
    "remoteapplicationmode:i:1\r\n"
    "remoteapplicationname:s:My App\r\n"
    "remoteapplicationprogram:s:C:\\app.exe\r\n"
    "redirectclipboard:i:1\r\n"
    "redirectwebauthn:i:1\r\n"
    "unrelatedcustomsetting:s:untouched\r\n"
)


def _lines(signed_text: str) -> list[str]:
    assert signed_text.endswith("\r\n")
    return signed_text[:-2].split("\r\n")


def _signature_blob(signed_text: str) -> bytes:
    line = next(line for line in _lines(signed_text) if line.startswith("signature:s:"))
    return base64.b64decode(line[len("signature:s:"):].replace(" ", ""))


def _with_blob(signed_text: str, blob: bytes) -> str:
    return signed_text.split("signature:s:")[0] + "signature:s:" + format_signature_value(blob) + "\r\n"


# --- the published vectors ------------------------------------------------------------------


def test_the_first_vector_message_matches_byte_for_byte():
    scope, message = signing_message(VECTOR_1)

    expected = (
        "full address:s:myserver\r\nalternate full address:s:myserver\r\nremoteapplicationmode:i:1\r\n"
        "signscope:s:Full Address,Alternate Full Address,RemoteApplicationMode\r\n\0"
    ).encode("utf-16-le")
    assert message == expected
    assert len(message) == 318
    assert hashlib.sha256(message).hexdigest() == "73f42e4983801dbf502ebfb3d89ac02027259a55397f50af57a388d708221798"
    assert message[:10] == bytes.fromhex("66 00 75 00 6c 00 6c 00 20 00")
    assert message[-8:] == bytes.fromhex("65 00 0d 00 0a 00 00 00")
    assert scope.names == ("Full Address", "Alternate Full Address", "RemoteApplicationMode")


def test_the_rdpsign_exe_comparison_vector_matches():
    scope, message = signing_message(VECTOR_2)

    assert scope.line == (
        "signscope:s:Full Address,Alternate Full Address,RemoteApplicationProgram,RemoteApplicationMode,"
        "RemoteApplicationName,RedirectClipboard,RedirectWebAuthn"
    )
    assert len(message) == 714
    assert hashlib.sha256(message).hexdigest() == "e9bb41f252fa1fa11faf90ce26fbe675863fe75b9634b111a4f0d292f56a4b73"


# --- the rules of §2.1 and §2.2 --------------------------------------------------------------


def test_signscope_follows_the_table_order_not_the_file_order():
    scope, _ = signing_message([
        "redirectclipboard:i:1", "audiomode:i:0", "gatewayhostname:s:gw:443", "server port:i:3389",
        "full address:s:host",
    ])

    assert scope.names == ("Full Address", "Alternate Full Address", "Server Port", "GatewayHostname",
                           "AudioMode", "RedirectClipboard")
    assert scope.signed_lines[:3] == ("full address:s:host", "alternate full address:s:host", "server port:i:3389")


def test_the_alternate_full_address_is_added_when_missing():
    scope, _ = signing_message(["full address:s:pool-a", "audiomode:i:0"])

    assert scope.settings == ("full address:s:pool-a", "audiomode:i:0", "alternate full address:s:pool-a")


def test_an_existing_alternate_full_address_is_kept_as_it_is():
    scope, _ = signing_message(["full address:s:pool-a", "alternate full address:s:other"])

    assert scope.settings == ("full address:s:pool-a", "alternate full address:s:other")
    assert "alternate full address:s:other" in scope.signed_lines


def test_prefixes_match_case_insensitively_and_lines_are_copied_verbatim():
    scope, message = signing_message(["Full Address:s:Host.Example", "AudioMode:i:2"])

    assert scope.signed_lines == ("Full Address:s:Host.Example", "alternate full address:s:Host.Example",
                                  "AudioMode:i:2")
    assert "Full Address:s:Host.Example\r\n".encode("utf-16-le") in message


def test_the_expand_settings_keep_the_s_quirk_so_their_i_lines_stay_unsigned():
    scope, _ = signing_message([
        "full address:s:h", "remoteapplicationexpandcmdline:i:1", "remoteapplicationexpandworkingdir:i:1",
    ])

    assert scope.names == ("Full Address", "Alternate Full Address")
    assert "remoteapplicationexpandcmdline:i:1" in scope.settings


def test_settings_outside_the_table_are_kept_but_not_signed():
    scope, _ = signing_message(["full address:s:h", "gatewayaccesstoken:s:TICKET", "workspace id:s:w"])

    assert "gatewayaccesstoken:s:TICKET" in scope.settings
    assert all("gatewayaccesstoken" not in line for line in scope.signed_lines)
    assert scope.names == ("Full Address", "Alternate Full Address")


def test_old_signature_lines_are_dropped_and_duplicates_keep_the_last_value():
    scope, _ = signing_message([
        "full address:s:h", "remoteapplicationmode:i:0", "signscope:s:Full Address",
        "Signature:s:AAAA  ", "RemoteApplicationMode:i:1",
    ])

    assert scope.settings == ("full address:s:h", "RemoteApplicationMode:i:1", "alternate full address:s:h")
    assert scope.names.count("RemoteApplicationMode") == 1


def test_a_file_without_full_address_cannot_be_signed():
    with pytest.raises(RdpSignatureError, match="full address"):
        signing_message(["audiomode:i:0"])


def test_a_nul_character_in_a_setting_is_refused():
    with pytest.raises(RdpSignatureError, match="NUL"):
        signing_message(["full address:s:h\0x"])


def test_line_lists_may_not_smuggle_line_breaks():
    with pytest.raises(RdpSignatureError, match="line breaks"):
        signing_message(["full address:s:h\r\nalternate full address:s:evil"])


# --- the signature value ---------------------------------------------------------------------


def test_the_signature_value_is_chunked_in_64_characters_each_followed_by_two_spaces():
    value = format_signature_value(bytes(range(256)) * 2)

    chunks = value.split("  ")
    assert chunks[-1] == ""  # the last chunk is followed by two spaces too
    assert all(len(chunk) == 64 for chunk in chunks[:-2])
    assert 0 < len(chunks[-2]) <= 64
    assert base64.b64decode("".join(chunks)) == bytes(range(256)) * 2


def test_the_signed_file_ends_with_signscope_and_signature_lines(rdp_signer):
    text = sign_rdp(VECTOR_2, rdp_signer.certificate, rdp_signer.private_key)

    lines = _lines(text)
    assert lines[-2] == signing_message(VECTOR_2)[0].line
    assert lines[-1].startswith("signature:s:") and lines[-1].endswith("  ")
    assert "unrelatedcustomsetting:s:untouched" in lines
    assert "alternate full address:s:myserver" in lines


def test_the_blob_has_rdpsigns_12_byte_header(rdp_signer):
    blob = _signature_blob(sign_rdp(VECTOR_1, rdp_signer.certificate, rdp_signer.private_key))

    assert blob[:8] == bytes.fromhex("01 00 01 00 01 00 00 00")
    assert struct.unpack("<I", blob[8:12])[0] == len(blob) - 12


def test_the_cms_carries_exactly_one_certificate_the_signers(rdp_signer):
    der = _signature_blob(sign_rdp(VECTOR_1, rdp_signer.certificate, rdp_signer.private_key))[12:]

    assert pkcs7.load_der_pkcs7_certificates(der) == [rdp_signer.certificate]


@pytest.fixture
def openssl():
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed")
    return path


def _write_signature_files(tmp_path, text: str, ca_cert):
    blob = _signature_blob(text)
    (tmp_path / "sig.p7s").write_bytes(blob[12:])
    # The message a verifier rebuilds: signed lines as written in the file, then the signscope.
    lines = _lines(text)
    scope_line = next(line for line in lines if line.startswith("signscope:s:"))
    _, message = signing_message([line for line in lines if not line.startswith("signature:s:")])
    assert message.endswith((scope_line + "\r\n\0").encode("utf-16-le"))
    (tmp_path / "msg.bin").write_bytes(message)
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))


def test_openssl_cms_verifies_the_signature_over_the_message(tmp_path, openssl, rdp_ca, rdp_signer):
    text = sign_rdp(VECTOR_2, rdp_signer.certificate, rdp_signer.private_key)
    _write_signature_files(tmp_path, text, rdp_ca.certificate)

    result = subprocess.run(
        [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.p7s", "-content", "msg.bin",
         "-CAfile", "ca.pem", "-purpose", "any", "-out", "/dev/null"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr


def test_openssl_refuses_the_signature_over_a_changed_message(tmp_path, openssl, rdp_ca, rdp_signer):
    text = sign_rdp(VECTOR_2, rdp_signer.certificate, rdp_signer.private_key)
    _write_signature_files(tmp_path, text, rdp_ca.certificate)
    (tmp_path / "msg.bin").write_bytes((tmp_path / "msg.bin").read_bytes().replace(
        "myserver".encode("utf-16-le"), "evilhost".encode("utf-16-le")))

    result = subprocess.run(
        [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.p7s", "-content", "msg.bin",
         "-CAfile", "ca.pem", "-purpose", "any", "-out", "/dev/null"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode != 0


def test_the_cms_has_no_signed_attributes_and_sha256(tmp_path, openssl, rdp_signer):
    blob = _signature_blob(sign_rdp(VECTOR_1, rdp_signer.certificate, rdp_signer.private_key))
    (tmp_path / "sig.p7s").write_bytes(blob[12:])

    printed = subprocess.run(
        [openssl, "cms", "-cmsout", "-print", "-inform", "DER", "-in", "sig.p7s"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    ).stdout

    signer_info = printed[printed.index("signerInfos:"):]
    assert "signedAttrs:\n          <ABSENT>" in signer_info
    assert "eContent: <ABSENT>" in printed  # detached
    assert "digestAlgorithm: \n          algorithm: sha256" in signer_info
    assert printed.count("d.certificate:") == 1


# --- the file encoding -----------------------------------------------------------------------


def test_files_are_encoded_utf16le_with_bom_and_crlf():
    data = rdpfile.encode("full address:s:h\nscreen mode id:i:2\n")

    assert data == b"\xff\xfe" + "full address:s:h\r\nscreen mode id:i:2\r\n".encode("utf-16-le")
    assert rdpfile.decode(data) == "full address:s:h\r\nscreen mode id:i:2\r\n"


def test_decoding_accepts_utf8_and_refuses_garbage():
    assert rdpfile.decode(b"full address:s:h\r\n") == "full address:s:h\r\n"
    with pytest.raises(rdpfile.RdpFileFormatError, match="neither"):
        rdpfile.decode(b"\xff\xfe\x00")


# --- verification ----------------------------------------------------------------------------


def _signed_file(signer, lines=VECTOR_2) -> bytes:
    return rdpfile.encode(sign_rdp(lines, signer.certificate, signer.private_key))


def test_it_accepts_a_file_it_signed(rdp_ca, rdp_signer):
    assert verify_rdp_signature(_signed_file(rdp_signer), rdp_ca.certificate)
    assert check_rdp_signature(_signed_file(rdp_signer), rdp_ca.certificate) == rdp_signer.certificate


def test_it_accepts_the_utf8_form_too(rdp_ca, rdp_signer):
    text = sign_rdp(VECTOR_2, rdp_signer.certificate, rdp_signer.private_key)

    assert verify_rdp_signature(text.encode("utf-8"), rdp_ca.certificate)


def test_it_refuses_a_changed_signed_setting(rdp_ca, rdp_signer):
    data = _signed_file(rdp_signer).replace("C:\\app.exe".encode("utf-16-le"), "C:\\evil.exe".encode("utf-16-le"))

    with pytest.raises(RdpSignatureError, match="does not match"):
        check_rdp_signature(data, rdp_ca.certificate)
    assert not verify_rdp_signature(data, rdp_ca.certificate)


def test_it_refuses_a_signable_setting_added_after_signing(rdp_ca, rdp_signer):
    text = rdpfile.decode(_signed_file(rdp_signer)) + "alternate shell:s:cmd.exe\r\n"

    with pytest.raises(RdpSignatureError, match="outside the signscope"):
        check_rdp_signature(rdpfile.encode(text), rdp_ca.certificate)


@pytest.mark.parametrize("added", ["full address :s:evil.example", "Full Address:S:evil.example",
                                   "  alternate shell:s:cmd.exe"])
def test_it_refuses_a_signable_setting_added_in_another_spelling_clients_read_the_same(rdp_ca, rdp_signer, added):
    text = rdpfile.decode(_signed_file(rdp_signer)) + added + "\r\n"
    assert rdpfile.parse_line(added.strip()).name in ("full address", "alternate shell")  # what a client takes

    with pytest.raises(RdpSignatureError, match="outside the signscope"):
        check_rdp_signature(rdpfile.encode(text), rdp_ca.certificate)


def test_the_access_token_can_change_without_breaking_the_signature(rdp_ca, rdp_signer):
    # §2.2: gatewayaccesstoken is not signable, which is why the ticket can live in a signed file.
    data = _signed_file(rdp_signer, ["full address:s:h", "gatewayaccesstoken:s:first"])
    changed = data.replace("first".encode("utf-16-le"), "other".encode("utf-16-le"))

    assert verify_rdp_signature(changed, rdp_ca.certificate)


def test_it_refuses_a_signer_from_another_ca(other_ca, rdp_signer):
    with pytest.raises(RdpSignatureError, match="not issued by the trusted CA"):
        check_rdp_signature(_signed_file(rdp_signer), other_ca.certificate)


def test_it_refuses_an_expired_signer(rdp_ca, rdp_signer):
    at = rdp_signer.certificate.not_valid_after_utc + timedelta(seconds=1)

    with pytest.raises(RdpSignatureError, match="not valid at this time"):
        check_rdp_signature(_signed_file(rdp_signer), rdp_ca.certificate, at=at)


def test_a_signer_that_is_the_trusted_certificate_itself_is_accepted(rdp_ca):
    assert verify_rdp_signature(_signed_file(rdp_ca), rdp_ca.certificate)


def test_a_second_signer_of_the_same_ca_verifies(rdp_ca):
    assert verify_rdp_signature(_signed_file(issue_signer(rdp_ca, "second")), rdp_ca.certificate)


@pytest.mark.parametrize("damage, reason", [
    (lambda t: t.replace("signscope:s:", "signscope:s:Bogus,"), "unknown setting"),
    (lambda t: t.replace("signscope:s:", "signscope:s:Alternate Shell,"), "no such setting"),
    (lambda t: t.replace("signature:s:", "signature:s:!!"), "not base64"),
    (lambda t: _with_blob(t, b"\x02" + _signature_blob(t)[1:]), "header"),
    (lambda t: _with_blob(t, _signature_blob(t) + b"\x00"), "header"),
    (lambda t: t + "signature:s:AAAA\r\n", "exactly one"),
    (lambda t: "\r\n".join(line for line in t.split("\r\n") if not line.startswith("signscope")), "exactly one"),
])
def test_it_refuses_damaged_files_with_a_reason(rdp_ca, rdp_signer, damage, reason):
    text = damage(sign_rdp(VECTOR_2, rdp_signer.certificate, rdp_signer.private_key))

    with pytest.raises(RdpSignatureError, match=reason):
        check_rdp_signature(text.encode("utf-8"), rdp_ca.certificate)


def test_a_truncated_cms_is_refused_not_crashed(rdp_ca, rdp_signer):
    text = sign_rdp(VECTOR_2, rdp_signer.certificate, rdp_signer.private_key)
    der = _signature_blob(text)[12:]
    for cut in (0, 1, 2, 20, 40, 100, len(der) // 2, len(der) - 1):
        short = struct.pack("<III", 0x00010001, 1, cut) + der[:cut]
        assert not verify_rdp_signature(_with_blob(text, short).encode("utf-8"), rdp_ca.certificate)


def _signed_with_attributes(signer, lines, signed_message: bytes | None = None) -> bytes:
    """A file signed by a CMS signer that adds signed attributes (content type, digest, time)."""
    scope, message = signing_message(lines)
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(signed_message if signed_message is not None else message)
        .add_signer(signer.certificate, signer.private_key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )
    blob = struct.pack("<III", 0x00010001, 1, len(der)) + der
    text = "".join(line + "\r\n" for line in [*scope.settings, scope.line,
                                                "signature:s:" + format_signature_value(blob)])
    return rdpfile.encode(text)


def test_signatures_with_signed_attributes_from_other_signers_verify(rdp_ca, rdp_signer):
    assert verify_rdp_signature(_signed_with_attributes(rdp_signer, VECTOR_2), rdp_ca.certificate)


def test_signed_attributes_over_another_message_are_refused(rdp_ca, rdp_signer):
    data = _signed_with_attributes(rdp_signer, VECTOR_2, signed_message=b"something else")

    with pytest.raises(RdpSignatureError, match="message digest does not match"):
        check_rdp_signature(data, rdp_ca.certificate)
