"""The browser's RDP client, vendored: which npm files we serve, how they are checked and updated.

Devolutions' IronRDP web client is two npm packages (MIT OR Apache-2.0): the web component
``<iron-remote-desktop>`` and its RDP backend, whose WebAssembly is inlined in one JavaScript file. They
are committed under ``feed/static/feed/vendor/`` so that ``make run`` serves them with nothing but Python
on the machine. Each package is pinned by version and by the registry's ``integrity`` (SHA-512 of the
tarball); ``manifest.json`` beside the files records the SHA-256 of every vendored file, so a changed byte
is caught without the network (``manage.py vendor_webclient --check``, run by the tests).

Beside each served file lies its gzip variant (``.gz``), which WhiteNoise sends to browsers that accept it:
``make run`` serves straight from the app folders without ``collectstatic``, so nothing else would compress
the 6 MB backend (2.2 MB gzipped). The manifest pins the variant too, and ``--check`` also proves that it
decompresses to exactly the served file.

The npm tarballs carry no licence file: the licence texts are IronRDP's repository-level ``LICENSE-MIT``
and ``LICENSE-APACHE``, committed beside the files and pinned in the manifest the same way.

Pure code (no Django): the management command is a thin wrapper.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

VENDOR_DIR = Path(__file__).resolve().parent / "static" / "feed" / "vendor"
REGISTRY = "https://registry.npmjs.org"
MANIFEST_NAME = "manifest.json"
# The largest file we accept from a tarball, and the largest tarball: the RDP backend is 6.1 MB unpacked.
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_TARBALL_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Pin:
    """One npm package as we vendor it: exact version, the registry's integrity, the files we serve."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>", as `npm view <name>@<version> dist.integrity` prints it
    files: tuple[str, ...]  # paths inside the tarball's package/ folder

    @property
    def folder(self) -> str:
        """Where the files go under the vendor dir: named with the version, so a file's URL changes whenever
        its bytes may, and WhiteNoise can let browsers cache it for good (WHITENOISE_IMMUTABLE_FILE_TEST)."""
        return f"{self.name.rsplit('/', 1)[-1]}-{self.version}"

    @property
    def tarball_url(self) -> str:
        base = self.name.rsplit("/", 1)[-1]
        return f"{REGISTRY}/{quote(self.name, safe='@/')}/-/{base}-{self.version}.tgz"

    @property
    def tarball_name(self) -> str:
        """The file name `npm pack <name>@<version>` writes."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


PINS: tuple[Pin, ...] = (
    Pin(
        name="@devolutions/iron-remote-desktop",
        version="0.11.0",
        integrity="sha512-ZH8xfabDA+6rAXkW2V3XgRdj0LHOsHoXAzars/H22DmKsHM39LdMfheKFUR3qLaFDM8mjf6DTFngzjgr+Byx0Q==",
        files=("iron-remote-desktop.js",),
    ),
    Pin(
        name="@devolutions/iron-remote-desktop-rdp",
        version="0.7.0",
        integrity="sha512-CclAh4OS9aBoPJT0l7bih7ETOHPnB9KjT0drB0a6r5+Qh95pTEuQCx7uFN/XA2AlkFlrqx+DBAMDGYXmgsjHAQ==",
        files=("iron-remote-desktop-rdp.js",),
    ),
)

# Both packages declare "MIT OR Apache-2.0" and ship no licence file; these are the texts in the root of
# their repository (unchanged there since its first commit), committed beside the vendored files.
LICENSE_SOURCE = "https://github.com/Devolutions/IronRDP (LICENSE-MIT, LICENSE-APACHE at commit 18e259cd)"
LICENSE_FILES = ("LICENSE-MIT", "LICENSE-APACHE")


class VendorError(Exception):
    """A tarball, file or manifest that is not what the pins say: nothing is written."""


def sri_sha512(data: bytes) -> str:
    """The Subresource Integrity string npm records for a tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The web component (Svelte) puts its stylesheet into its shadow root as one <style> element, compiled in as
# `{ hash: "svelte-…", code: "<css>" }`.
_COMPONENT_STYLE = re.compile(r'hash: "svelte-[a-z0-9]+",\s*code: ("(?:[^"\\]|\\.)*")')


def component_style_hashes(source: str) -> list[str]:
    """The CSP hash sources (``'sha256-…'``) of the <style> elements the component adds, read from its file:
    the session page's ``style-src-elem`` allows exactly these, and they follow a version update by themselves."""
    hashes = []
    for match in _COMPONENT_STYLE.finditer(source):
        try:
            css = json.loads(match.group(1))
        except ValueError:
            continue
        digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
        hashes.append(f"'sha256-{digest}'")
    return hashes


def verify_tarball(pin: Pin, tarball: bytes, registry_integrity: str | None = None) -> None:
    """Refuse a tarball whose SHA-512 is not the pinned one (and, when the registry's metadata was read,
    not the registry's either: a pin that disagrees with the registry is a pin to look at)."""
    if len(tarball) > MAX_TARBALL_BYTES:
        raise VendorError(f"{pin.name}@{pin.version}: the tarball is larger than {MAX_TARBALL_BYTES} bytes")
    if registry_integrity is not None and registry_integrity != pin.integrity:
        raise VendorError(f"{pin.name}@{pin.version}: the registry says {registry_integrity}, the pin says "
                          f"{pin.integrity}")
    actual = sri_sha512(tarball)
    if actual != pin.integrity:
        raise VendorError(f"{pin.name}@{pin.version}: the tarball's integrity is {actual}, not the pinned "
                          f"{pin.integrity}")


def extract(pin: Pin, tarball: bytes) -> dict[str, bytes]:
    """The pinned files' bytes from a verified tarball (``package/<file>``, regular files only)."""
    wanted = {f"package/{name}": name for name in pin.files}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            for member in archive:
                name = wanted.get(member.name)
                if name is None:
                    continue
                if not member.isreg():
                    raise VendorError(f"{pin.name}: {member.name} is not a regular file")
                if member.size > MAX_FILE_BYTES:
                    raise VendorError(f"{pin.name}: {member.name} is larger than {MAX_FILE_BYTES} bytes")
                if name in found:
                    raise VendorError(f"{pin.name}: {member.name} is in the tarball twice")
                handle = archive.extractfile(member)
                found[name] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise VendorError(f"{pin.name}: not a readable npm tarball ({exc})") from exc
    missing = sorted(set(pin.files) - set(found))
    if missing:
        raise VendorError(f"{pin.name}@{pin.version}: the tarball has no {', '.join(missing)}")
    return found


def build_manifest(files: dict[str, bytes], licenses: dict[str, bytes]) -> dict:
    """The manifest for vendored files keyed by their path under the vendor dir."""
    packages = []
    for pin in PINS:
        packages.append({
            "name": pin.name,
            "version": pin.version,
            "license": "MIT OR Apache-2.0",
            "tarball": pin.tarball_url,
            "integrity": pin.integrity,
            "files": [entry for name in pin.files for entry in _file_entries(f"{pin.folder}/{name}", files)],
        })
    return {
        "comment": "Written by `manage.py vendor_webclient`; checked by `manage.py vendor_webclient --check`.",
        "packages": packages,
        "licenses": {
            "source": LICENSE_SOURCE,
            "files": [{"path": name, "size": len(licenses[name]), "sha256": sha256_hex(licenses[name])}
                      for name in LICENSE_FILES],
        },
    }


def gzip_variant(data: bytes) -> bytes:
    """The ``.gz`` we serve beside a file: best compression, no name and no time in the header."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def _file_entries(relative: str, files: dict[str, bytes]) -> list[dict]:
    entries = [{"path": relative, "size": len(files[relative]), "sha256": sha256_hex(files[relative])}]
    variant = files.get(relative + ".gz")
    if variant is not None:
        entries.append({"path": relative + ".gz", "size": len(variant), "sha256": sha256_hex(variant),
                        "gzip_of": relative})
    return entries


def manifest_entries(manifest: object) -> list[dict]:
    """Every file entry of a manifest read from disk, validated: a path under the vendor dir, a size and
    a SHA-256. The packages must be exactly the pinned ones."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("packages"), list):
        raise VendorError("the manifest has no package list")
    pinned = {(pin.name, pin.version, pin.integrity) for pin in PINS}
    listed = set()
    entries: list[dict] = []
    for package in manifest["packages"]:
        if not isinstance(package, dict):
            raise VendorError("a manifest package is not an object")
        listed.add((package.get("name"), package.get("version"), package.get("integrity")))
        entries.extend(_entries(package.get("files")))
    if listed != pinned:
        raise VendorError(f"the manifest lists {sorted(map(str, listed))}, the pins are {sorted(map(str, pinned))}: "
                          "run `manage.py vendor_webclient` after changing a pin")
    licenses = manifest.get("licenses")
    entries.extend(_entries(licenses.get("files") if isinstance(licenses, dict) else None))
    return entries


def _entries(files: object) -> list[dict]:
    if not isinstance(files, list) or not files:
        raise VendorError("a manifest file list is missing or empty")
    for entry in files:
        path = entry.get("path") if isinstance(entry, dict) else None
        if (not isinstance(path, str) or not path or path.startswith("/") or "\\" in path
                or any(part in ("", ".", "..") for part in path.split("/"))):
            raise VendorError(f"the manifest names an unsafe path: {path!r}")
        if not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            raise VendorError(f"the manifest entry for {path} has no size or sha256")
    return files


def check(vendor_dir: Path) -> list[str]:
    """Compare the vendored files with the manifest; the problems found (empty: all good). No network."""
    try:
        manifest = json.loads((vendor_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"cannot read {vendor_dir / MANIFEST_NAME}: {exc}"]
    try:
        entries = manifest_entries(manifest)
    except VendorError as exc:
        return [str(exc)]
    problems = []
    for entry in entries:
        path = vendor_dir / entry["path"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{entry['path']}: {exc.strerror or exc}")
            continue
        if len(data) != entry["size"] or sha256_hex(data) != entry["sha256"]:
            problems.append(f"{entry['path']}: {len(data)} bytes, sha256 {sha256_hex(data)}; the manifest says "
                            f"{entry['size']} bytes, sha256 {entry['sha256']}")
        elif "gzip_of" in entry:
            problems.extend(_check_variant(vendor_dir, entry))
    expected = {entry["path"] for entry in entries} | {MANIFEST_NAME}
    for path in sorted(p for p in vendor_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(vendor_dir).as_posix()
        if relative not in expected:
            problems.append(f"{relative}: not in the manifest")
    return problems


def _check_variant(vendor_dir: Path, entry: dict) -> list[str]:
    original = entry["gzip_of"]
    if not isinstance(original, str) or original + ".gz" != entry["path"]:
        return [f"{entry['path']}: gzip_of names {original!r}"]
    try:
        same = gzip.decompress((vendor_dir / entry["path"]).read_bytes()) == (vendor_dir / original).read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return [f"{entry['path']}: {exc}"]
    return [] if same else [f"{entry['path']}: does not decompress to {original}"]


def with_gzip_variants(files: dict[str, bytes]) -> dict[str, bytes]:
    """The served files and a ``.gz`` beside each."""
    return {**files, **{relative + ".gz": gzip_variant(data) for relative, data in files.items()}}


def write(vendor_dir: Path, files: dict[str, bytes], licenses: dict[str, bytes]) -> dict:
    """Write the vendored files, their gzip variants and the manifest (the files first: a manifest never names
    a file that was not written)."""
    files = with_gzip_variants(files)
    for relative, data in {**files, **licenses}.items():
        path = vendor_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = build_manifest(files, licenses)
    (vendor_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
