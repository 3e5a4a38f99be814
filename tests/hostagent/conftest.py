"""Fixtures for the host channel tests: a CA per test (adopted from one root made per session), hosts
with real host-agent certificates, and a protocol-speaking test agent over WebsocketCommunicator."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.cache import caches
from rest_framework.test import APIClient

from broker.models import SessionHost
from core import ca
from core.choices import CertificatePurpose
from core.models import Certificate
from hostagent.agent.state import make_csr, new_key
from hostagent.routing import websocket_urlpatterns
from tests.ca_files import write_root_files
from tests.e2e.fixtures import pytest_runtest_makereport  # noqa: F401  (a failed test shows its processes' logs)
from wire import hostchannel, proof

RECEIVE_TIMEOUT = 10  # an upper bound for a loaded machine, not a speed assertion
REGISTER_URL = "/api/v1/hostagent/register/"


@pytest.fixture(scope="session")
def root_files(tmp_path_factory) -> tuple[Path, Path]:
    """One CA root (EC P-256: quick to make) for the whole run; each test adopts it into its own data dir."""
    key = ec.generate_private_key(ec.SECP256R1())
    return write_root_files(tmp_path_factory.mktemp("root"), key, "Host Channel Test CA", days=3650)


@pytest.fixture
def our_ca(settings, tmp_path, root_files, db):
    """This test's CA, in this test's own DATA_DIR."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    return ca.init_ca(cert_path=root_files[0], key_path=root_files[1])


@pytest.fixture
def eager_tasks():
    """Celery tasks run in this process, as in the embedded default, even when Redis is configured:
    these tests start no worker (the process-level test does)."""
    from wvdportal.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture(autouse=True)
def fresh_cache():
    # Registration failures are counted in the sign-in throttle's cache: no test inherits another's count.
    for cache in caches.all():
        cache.clear()
    yield
    for cache in caches.all():
        cache.clear()


@dataclass
class HostIdentity:
    host: SessionHost
    key: ec.EllipticCurvePrivateKey
    certificate_pem: str

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode())


def issue_identity(name: str, purpose: str = CertificatePurpose.HOST_AGENT,
                   ) -> tuple[ec.EllipticCurvePrivateKey, str, int]:
    """A fresh key and a certificate our CA issued for it: (key, PEM, certificate id)."""
    key = new_key()
    dns_names = [name] if purpose in (CertificatePurpose.HOST_RDP, CertificatePurpose.GATEWAY_TLS) else []
    record = ca.issue_from_csr(make_csr(key, name).encode(), purpose, common_name=name, dns_names=dns_names)
    return key, record.pem, record.pk


def make_host(pool, name: str) -> HostIdentity:
    key, pem, certificate_id = issue_identity(name)
    host = SessionHost.objects.create(host_pool=pool, name=name, certificate_id=certificate_id)
    return HostIdentity(host=host, key=key, certificate_pem=pem)


@pytest.fixture
def host_a(our_ca, pooled_pool) -> HostIdentity:
    return make_host(pooled_pool, "host-a")


@pytest.fixture
def host_b(our_ca, pooled_pool) -> HostIdentity:
    return make_host(pooled_pool, "host-b")


@dataclass
class LiveHost:
    """A host that registered through the endpoint and whose agent holds a valid certificate; the pool's
    registration token is still valid, as a leaked one would be."""

    host: SessionHost
    token: str
    certificate: Certificate

    def register_again(self, name: str | None = None):
        """POST the registration again for this name, with a new key: a reinstalled machine, or a thief."""
        name = name or self.host.name
        return APIClient().post(REGISTER_URL, {"token": self.token, "name": name, "csr": make_csr(new_key(), name)},
                                format="json")

    def assert_replaced_by(self, response) -> None:
        """The registration took the host over: re-bound to the new certificate, the old one revoked, the
        mark used up."""
        assert response.status_code == 201, response.json()
        assert response.json()["session_host_id"] == self.host.pk
        host = SessionHost.objects.get(pk=self.host.pk)
        assert host.certificate.pem == response.json()["certificate"]
        assert (host.marked_for_replacement_at, host.marked_for_replacement_by) == (None, None)
        self.certificate.refresh_from_db()
        assert self.certificate.revoked_at is not None
        assert self.certificate.revocation_reason.startswith("Replaced by a new registration of the host")

    def assert_not_replaced(self, response) -> None:
        assert response.status_code == 409 and response.json()["code"] == "host_in_use", response.json()
        host = SessionHost.objects.get(pk=self.host.pk)
        assert host.certificate_id == self.certificate.pk and host.certificate.is_valid_now


@pytest.fixture
def live_host(our_ca, pooled_pool, eager_tasks) -> LiveHost:
    token, _ = pooled_pool.issue_registration_token()  # (fresh_cache: no inherited throttle counts)
    answer = APIClient().post(REGISTER_URL, {"token": token, "name": "host-a", "csr": make_csr(new_key(), "host-a")},
                              format="json")
    assert answer.status_code == 201, answer.json()
    host = SessionHost.objects.select_related("certificate").get(pk=answer.json()["session_host_id"])
    return LiveHost(host=host, token=token, certificate=host.certificate)


def checks(*, rdp: bool = True, disk: bool = True) -> list[hostchannel.HealthCheck]:
    return [
        {"name": "rdp_listener", "ok": rdp, "fatal": True, "detail": "127.0.0.1:3389" if rdp else "refused"},
        {"name": "disk_space", "ok": disk, "fatal": False, "detail": "40% free" if disk else "3% free, below 10%"},
        {"name": "agent_version", "ok": True, "fatal": False, "detail": "1.0.0"},
    ]


class AgentPeer:
    """The agent's side of the host channel, driven step by step by a test."""

    def __init__(self, identity: HostIdentity | None = None) -> None:
        self.identity = identity
        self.communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/hostagent/")
        self.nonce = b""
        self.seq = 0

    async def open(self) -> bytes:
        connected, _ = await self.communicator.connect(timeout=RECEIVE_TIMEOUT)
        assert connected
        challenge = await self.receive()
        assert challenge["type"] == "challenge"
        self.nonce = hostchannel.decode_base64url(challenge["nonce"])
        return self.nonce

    def signature(self, nonce: bytes | None = None, key=None) -> bytes:
        identity = self.identity
        return proof.sign_challenge(key or identity.key, self.nonce if nonce is None else nonce, identity.certificate)

    async def hello(self, signature: bytes | None = None, certificate_pem: str | None = None) -> dict:
        pem = certificate_pem or self.identity.certificate_pem
        await self.send(hostchannel.hello(pem, signature if signature is not None else self.signature(), "1.0.0"))
        return await self.receive()

    async def connect(self) -> dict:
        await self.open()
        welcome = await self.hello()
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def send(self, message: dict) -> None:
        await self.communicator.send_to(text_data=hostchannel.encode(message))

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=data)

    async def receive(self) -> dict:
        frame = await self.communicator.receive_from(timeout=RECEIVE_TIMEOUT)
        return json.loads(frame)

    async def heartbeat(self, health: list | None = None, sessions: list | str = "unsupported") -> dict:
        await self.send(hostchannel.heartbeat(self.seq, "1.0.0", health if health is not None else checks(), sessions))
        self.seq += 1
        ack = await self.receive()
        assert ack == {"type": "heartbeat_ack", "seq": self.seq - 1}
        return ack

    async def expect_close(self) -> tuple[dict | None, int]:
        """The error message the server sent before closing (if any) and the close code."""
        error = None
        output = await self.communicator.receive_output(timeout=RECEIVE_TIMEOUT)
        if output["type"] == "websocket.send":
            error = json.loads(output["text"])
            output = await self.communicator.receive_output(timeout=RECEIVE_TIMEOUT)
        assert output["type"] == "websocket.close", output
        return error, output.get("code")

    async def close(self) -> None:
        await self.communicator.disconnect()
