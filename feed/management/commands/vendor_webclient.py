"""Update or check the vendored browser RDP client (feed/webclientvendor.py says what and why)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from feed import webclientvendor as vendor

VENDOR_DIR = vendor.VENDOR_DIR
# What we read from the registry: its metadata for one version (a few kB) and the tarball.
_TIMEOUT = 60
_MAX_METADATA_BYTES = 1024 * 1024


class Command(BaseCommand):
    help = ("Download the pinned IronRDP web client tarballs from the npm registry (or take them from "
            "--tarball-dir, as `npm pack` writes them), verify each against its pinned SHA-512 integrity, and "
            "write the files we serve with their manifest. --check verifies the committed files against the "
            "manifest without the network.")

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true",
                            help="verify the vendored files against manifest.json; no network")
        parser.add_argument("--tarball-dir", type=Path,
                            help="read <package>-<version>.tgz from here (e.g. `npm pack` output) instead of the "
                                 "registry; the integrity is checked the same")
        parser.add_argument("--vendor-dir", type=Path, default=VENDOR_DIR, help="default: %(default)s")

    def handle(self, *args, check: bool, tarball_dir: Path | None, vendor_dir: Path, **options):
        if check:
            problems = vendor.check(vendor_dir)
            if problems:
                raise CommandError("the vendored web client does not match its manifest:\n  " + "\n  ".join(problems))
            self.stdout.write(f"{vendor_dir}: every vendored file matches {vendor.MANIFEST_NAME}")
            return
        licenses = {}
        for name in vendor.LICENSE_FILES:
            try:
                licenses[name] = (vendor_dir / name).read_bytes()
            except OSError as exc:
                raise CommandError(f"{vendor_dir / name} is missing ({vendor.LICENSE_SOURCE}): {exc}") from exc
        files: dict[str, bytes] = {}
        try:
            for pin in vendor.PINS:
                if tarball_dir is not None:
                    tarball = _read_local(tarball_dir / pin.tarball_name)
                    registry_integrity = None
                else:
                    registry_integrity = _registry_integrity(pin)
                    tarball = _download(pin.tarball_url, vendor.MAX_TARBALL_BYTES)
                vendor.verify_tarball(pin, tarball, registry_integrity)
                for name, data in vendor.extract(pin, tarball).items():
                    files[f"{pin.folder}/{name}"] = data
                self.stdout.write(f"{pin.name}@{pin.version}: integrity {pin.integrity} verified")
        except vendor.VendorError as exc:
            raise CommandError(str(exc)) from exc
        manifest = vendor.write(vendor_dir, files, licenses)
        for package in manifest["packages"]:
            for entry in package["files"]:
                self.stdout.write(f"  {entry['path']}  {entry['size']} bytes  sha256 {entry['sha256']}")
        self.stdout.write(f"wrote {vendor_dir / vendor.MANIFEST_NAME}")


def _read_local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise vendor.VendorError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _download(url: str, limit: int) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:  # noqa: S310 (a fixed https URL)
            data = response.read(limit + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise vendor.VendorError(f"cannot download {url}: {exc}") from exc
    if len(data) > limit:
        raise vendor.VendorError(f"{url} is larger than {limit} bytes")
    return data


def _registry_integrity(pin: vendor.Pin) -> str:
    url = f"{vendor.REGISTRY}/{pin.name.replace('/', '%2F')}/{pin.version}"
    try:
        metadata = json.loads(_download(url, _MAX_METADATA_BYTES))
        integrity = metadata["dist"]["integrity"]
    except (ValueError, KeyError, TypeError) as exc:
        raise vendor.VendorError(f"{url}: no dist.integrity in the registry's answer") from exc
    if not isinstance(integrity, str):
        raise vendor.VendorError(f"{url}: dist.integrity is not a string")
    return integrity
