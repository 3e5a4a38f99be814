"""Fixtures for the feed over HTTP: a CA per test, a RemoteApp, a group assignment, clients."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import Group
from django.core.cache import caches

from broker.models import HostPool
from core import ca
from feed.models import ApplicationGroup, Assignment, RemoteApp, Workspace
from tests.ca_files import write_root_files
from tests.e2e.fixtures import xvfb  # noqa: F401  (the e2e test's X display)
from wire import rdpfile

SCHEMAS = Path(__file__).resolve().parent.parent / "rdp" / "schemas"


@pytest.fixture(autouse=True)
def empty_cache():
    """Sign-in failure counters and converted icons live in the caches: every test starts without them."""
    for cache in caches.all():
        cache.clear()
    yield
    for cache in caches.all():
        cache.clear()


@pytest.fixture(scope="session")
def root_files(tmp_path_factory) -> tuple[Path, Path]:
    """A CA certificate and key on disk, made once per session (RSA 2048: quick to make) for each test
    to adopt into its own data dir."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return write_root_files(tmp_path_factory.mktemp("feed-root"), key, "Feed Test Root CA")


@pytest.fixture
def signing_ca(db, settings, tmp_path, root_files) -> x509.Certificate:
    """This installation's CA in the test's own data dir; the feed-signing certificate is issued from it
    on the first download. Returns the CA certificate."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    settings.DATA_DIR = data_dir
    cert_path, key_path = root_files
    ca.init_ca(cert_path=cert_path, key_path=key_path)
    return x509.load_pem_x509_certificate(ca.ca_certificate_pem())


@pytest.fixture
def remote_app(remoteapp_group) -> RemoteApp:
    return RemoteApp.objects.create(
        application_group=remoteapp_group, name="notepad", friendly_name="Notepad",
        file_path=r"C:\Windows\System32\notepad.exe", file_extensions=".txt, .log",
    )


@pytest.fixture
def staff_group(member) -> Group:
    group = Group.objects.create(name="office-staff")
    member.groups.add(group)
    return group


@pytest.fixture
def apps_through_group(remoteapp_group, remote_app, staff_group) -> RemoteApp:
    """The member reaches the RemoteApp group only through their group's assignment."""
    Assignment.objects.create(application_group=remoteapp_group, group=staff_group)
    return remote_app


def make_many_resources(member, count: int) -> None:
    """``count`` desktops assigned to ``member`` and ``count`` RemoteApps assigned to their first group."""
    workspace = Workspace.objects.create(name="big")
    pool = HostPool.objects.create(name="pool-big")
    for index in range(count):
        group = ApplicationGroup.objects.create(name=f"dag-{index}", group_type="desktop", host_pool=pool,
                                                workspace=workspace)
        Assignment.objects.create(application_group=group, user=member)
        apps = ApplicationGroup.objects.create(name=f"rag-{index}", group_type="remoteapp", host_pool=pool,
                                               workspace=workspace)
        RemoteApp.objects.create(application_group=apps, name="app", friendly_name=f"App {index}", file_path="/x")
        Assignment.objects.create(application_group=apps, group=member.groups.first())


def rdp_settings(data: bytes) -> dict[str, str]:
    """``name -> value`` of a served .rdp file (names lower-cased, the type dropped)."""
    settings = {}
    for line in rdpfile.decode(data).splitlines():
        match = re.match(r"^([^:]+):[sib]:(.*)$", line)
        if match:
            settings[match.group(1).lower()] = match.group(2)
    return settings
