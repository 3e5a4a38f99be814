"""The vendored browser RDP client: its files match the manifest, updates are integrity-checked, and WhiteNoise
serves it compressed and cached for good."""
from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from feed import webclientvendor as vendor
from feed.management.commands.vendor_webclient import VENDOR_DIR

BACKEND = next(pin for pin in vendor.PINS if pin.name.endswith("-rdp"))
BACKEND_URL = f"/static/feed/vendor/{BACKEND.folder}/{BACKEND.files[0]}"


@pytest.fixture
def vendor_copy(tmp_path) -> Path:
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR_DIR, copy)
    return copy


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_committed_files_match_their_manifest(capsys):
    call_command("vendor_webclient", "--check")
    assert "every vendored file matches" in capsys.readouterr().out


def test_the_manifest_names_the_pinned_packages_and_their_licences():
    manifest = json.loads((VENDOR_DIR / vendor.MANIFEST_NAME).read_text())
    listed = {(p["name"], p["version"], p["integrity"]) for p in manifest["packages"]}
    assert listed == {("@devolutions/iron-remote-desktop", "0.11.0", vendor.PINS[0].integrity),
                      ("@devolutions/iron-remote-desktop-rdp", "0.7.0", vendor.PINS[1].integrity)}
    assert {entry["path"] for entry in manifest["licenses"]["files"]} == {"LICENSE-MIT", "LICENSE-APACHE"}
    assert "Apache License" in (VENDOR_DIR / "LICENSE-APACHE").read_text()


def test_check_notices_a_changed_byte(vendor_copy):
    served = vendor_copy / BACKEND.folder / BACKEND.files[0]
    data = bytearray(served.read_bytes())
    data[1000] ^= 1
    served.write_bytes(bytes(data))
    with pytest.raises(CommandError, match=f"{BACKEND.files[0]}: 6090277 bytes, sha256"):
        call_command("vendor_webclient", "--check", "--vendor-dir", str(vendor_copy))


def test_check_notices_a_gzip_variant_of_other_bytes(vendor_copy):
    """A .gz whose hash was rewritten into the manifest still has to decompress to the served file."""
    relative = f"{BACKEND.folder}/{BACKEND.files[0]}.gz"
    other = gzip.compress(b"console.log('not the backend')", mtime=0)
    (vendor_copy / relative).write_bytes(other)
    manifest = json.loads((vendor_copy / vendor.MANIFEST_NAME).read_text())
    for package in manifest["packages"]:
        for entry in package["files"]:
            if entry["path"] == relative:
                entry.update(size=len(other), sha256=vendor.sha256_hex(other))
    (vendor_copy / vendor.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CommandError, match="does not decompress to"):
        call_command("vendor_webclient", "--check", "--vendor-dir", str(vendor_copy))


def test_check_notices_a_file_the_manifest_does_not_name(vendor_copy):
    (vendor_copy / BACKEND.folder / "extra.js").write_text("alert(1)")
    with pytest.raises(CommandError, match="extra.js: not in the manifest"):
        call_command("vendor_webclient", "--check", "--vendor-dir", str(vendor_copy))


def test_check_refuses_a_manifest_path_outside_the_vendor_dir(vendor_copy):
    manifest = json.loads((vendor_copy / vendor.MANIFEST_NAME).read_text())
    manifest["licenses"]["files"][0]["path"] = "../../settings.py"
    (vendor_copy / vendor.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CommandError, match="unsafe path"):
        call_command("vendor_webclient", "--check", "--vendor-dir", str(vendor_copy))


def test_an_update_refuses_a_tarball_that_is_not_the_pinned_one(vendor_copy, tmp_path):
    """Same file names, other bytes: the SHA-512 differs from the pin, nothing is written."""
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    for pin in vendor.PINS:
        (tarballs / pin.tarball_name).write_bytes(
            _tarball({f"package/{name}": b"export const evil = 1;" for name in pin.files}))
    before = {p: p.read_bytes() for p in vendor_copy.rglob("*") if p.is_file() and p.stat().st_size < 100_000}
    with pytest.raises(CommandError, match="integrity is sha512-.*not the pinned"):
        call_command("vendor_webclient", "--tarball-dir", str(tarballs), "--vendor-dir", str(vendor_copy))
    assert {p: p.read_bytes() for p in before} == before


def test_a_pin_that_disagrees_with_the_registry_is_refused():
    with pytest.raises(vendor.VendorError, match="the registry says"):
        vendor.verify_tarball(BACKEND, b"", registry_integrity="sha512-" + "A" * 86 + "==")


def test_extraction_takes_only_regular_files_it_was_pinned_to():
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w:gz") as archive:
        info = tarfile.TarInfo(f"package/{BACKEND.files[0]}")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(vendor.VendorError, match="not a regular file"):
        vendor.extract(BACKEND, link.getvalue())
    with pytest.raises(vendor.VendorError, match="has no iron-remote-desktop-rdp.js"):
        vendor.extract(BACKEND, _tarball({"package/README.md": b"hi"}))


def test_the_backend_is_served_gzipped_and_cached_for_good(client):
    response = client.get(BACKEND_URL, HTTP_ACCEPT_ENCODING="gzip, deflate, br", secure=True)
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert response["Cache-Control"] == "max-age=315360000, public, immutable"
    assert "Accept-Encoding" in response["Vary"]
    body = b"".join(response.streaming_content)
    assert gzip.decompress(body) == (VENDOR_DIR / BACKEND.folder / BACKEND.files[0]).read_bytes()


def test_a_client_without_gzip_gets_the_plain_file(client):
    response = client.get(BACKEND_URL, HTTP_ACCEPT_ENCODING="identity", secure=True)
    assert response.status_code == 200
    assert "Content-Encoding" not in response
    assert response["Content-Type"].startswith("text/javascript")
    assert int(response["Content-Length"]) == 6090277


def test_our_own_unversioned_files_are_not_cached_for_good(client):
    response = client.get("/static/feed/feed.js", secure=True)
    assert response.status_code == 200
    assert "immutable" not in response["Cache-Control"]
