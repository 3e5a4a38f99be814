"""The host's RDP certificate: issued by our CA over the host channel for the names clients check, recorded
as the agent reports what the host's RDP listener presents, and carried into every Connection record.

The server side through the real consumer (tests/hostagent/conftest.py's AgentPeer); the agent's side of
files, renewal timing and reload here; the whole loop against xrdp in tests/e2e/test_rdp_certificates.py.
"""
from __future__ import annotations

import asyncio
import os
import stat
import time

import pytest
from channels.db import database_sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from broker.models import Connection, ConnectionState, SessionHost
from core import ca
from core.models import Certificate
from hostagent import consumers
from hostagent.agent import rdpcert
from hostagent.agent.state import StateError, make_csr
from tests.hostagent.conftest import AgentPeer
from tests.hostagent.test_agent import issue_pair  # a key and certificate from a throwaway CA
from wire import hostchannel

pytestmark = pytest.mark.django_db(transaction=True)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def request_rdp_certificate(agent: AgentPeer, key=None, name: str = "host-a",
                                  request_id: str = "rdp-request-1") -> dict:
    await agent.send(hostchannel.rdp_certificate_request(request_id, make_csr(key or rsa_key(), name)))
    answer = await agent.receive()
    assert answer["id"] == request_id
    return answer


def fingerprint(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex()


async def host_row(agent: AgentPeer) -> SessionHost:
    return await database_sync_to_async(SessionHost.objects.select_related("rdp_certificate").get)(
        pk=agent.identity.host.pk)


# --- the server side --------------------------------------------------------------------------------------


async def test_the_certificate_names_the_pool_clients_connect_to_and_the_host(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()

    answer = await request_rdp_certificate(agent)

    assert answer["type"] == "certificate"
    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # The pool's name is the `full address` of every .rdp file: what FreeRDP and mstsc check on this hop.
    assert set(names.get_values_for_type(x509.DNSName)) == {"host-a", "pool-a"}
    assert certificate.subject.rfc4514_string() == "CN=host-a"
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert answer["ca_certificate"] == ca.ca_certificate_pem().decode()
    record = await database_sync_to_async(Certificate.objects.get)(fingerprint_sha256=fingerprint(answer["certificate"]))
    assert record.purpose == "host-rdp"
    await agent.close()


async def test_what_the_listener_presents_is_recorded_and_each_connection_keeps_it(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    answer = await request_rdp_certificate(agent)
    presented = fingerprint(answer["certificate"])

    await agent.send(hostchannel.rdp_certificate_report(presented, "Presented by 127.0.0.1:3389."))
    await agent.heartbeat()  # the report is handled before the next frame

    host = await host_row(agent)
    assert host.rdp_certificate is not None and host.rdp_certificate.fingerprint_sha256 == presented
    assert (host.rdp_certificate_sha256, host.rdp_certificate_detail) == (presented, "Presented by 127.0.0.1:3389.")
    assert host.rdp_certificate_checked_at is not None

    def a_connection_reaches_the_host() -> Connection:
        connection = Connection.objects.create(host_pool=host.host_pool, session_host=host,
                                               state=ConnectionState.CONNECTING)
        Connection.objects.filter(pk=connection.pk).host_connected()
        return Connection.objects.get(pk=connection.pk)

    connection = await database_sync_to_async(a_connection_reaches_the_host)()
    assert connection.host_rdp_certificate_sha256 == presented
    await agent.close()


async def test_a_listener_presenting_a_certificate_we_did_not_issue_is_not_verified(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    foreign = "ab" * 32

    await agent.send(hostchannel.rdp_certificate_report(foreign, "Presented by 127.0.0.1:3389."))
    await agent.heartbeat()

    host = await host_row(agent)
    assert host.rdp_certificate is None and host.rdp_certificate_sha256 == foreign
    assert host.rdp_certificate_detail.startswith("The RDP listener presents a certificate this CA did not issue")
    await agent.close()


async def test_a_renewed_certificate_supersedes_the_one_before_once_it_is_presented(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    first = await request_rdp_certificate(agent, request_id="rdp-request-1")
    await agent.send(hostchannel.rdp_certificate_report(fingerprint(first["certificate"]), "Presented."))
    second = await request_rdp_certificate(agent, request_id="rdp-request-2")
    old = await database_sync_to_async(Certificate.objects.get)(fingerprint_sha256=fingerprint(first["certificate"]))
    assert old.revoked_at is None  # still what clients are given until the host presents the new one

    await agent.send(hostchannel.rdp_certificate_report(fingerprint(second["certificate"]), "Presented."))
    await agent.heartbeat()

    await database_sync_to_async(old.refresh_from_db)()
    assert old.renewed_by_id is not None and old.revoked_at is not None
    assert (await host_row(agent)).rdp_certificate_sha256 == fingerprint(second["certificate"])
    await agent.close()


async def test_a_request_for_another_hosts_name_is_refused_and_nothing_is_issued(host_a, host_b):
    agent = AgentPeer(host_a)
    await agent.connect()
    issued_before = await database_sync_to_async(Certificate.objects.filter(purpose="host-rdp").count)()

    answer = await request_rdp_certificate(agent, name="host-b")

    assert answer["type"] == "certificate_refused" and "must name exactly 'host-a'" in answer["message"]
    assert await database_sync_to_async(Certificate.objects.filter(purpose="host-rdp").count)() == issued_before
    await agent.heartbeat()  # the channel stays up
    await agent.close()


async def test_requests_beyond_the_hourly_allowance_are_refused(host_a, monkeypatch):
    monkeypatch.setattr(consumers, "RDP_CERTIFICATES_PER_HOUR", 2)
    agent = AgentPeer(host_a)
    await agent.connect()
    key = rsa_key()
    for number in (1, 2):
        assert (await request_rdp_certificate(agent, key, request_id=f"rdp-request-{number}"))["type"] == "certificate"

    answer = await request_rdp_certificate(agent, key, request_id="rdp-request-3")

    assert answer["type"] == "certificate_refused" and "More than 2 RDP certificates in an hour" in answer["message"]
    await agent.close()


async def test_a_report_that_is_not_a_fingerprint_closes_the_channel(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.send_raw(text='{"type": "rdp_certificate", "presented_sha256": "../../etc", "detail": ""}')
    error, code = await agent.expect_close()
    assert code == hostchannel.CLOSE_PROTOCOL_ERROR and "presented_sha256" in error["message"]


# --- the agent's side: files, timing, reload --------------------------------------------------------------


@pytest.fixture
def rdp_files(tmp_path) -> rdpcert.RdpCertificateOptions:
    return rdpcert.RdpCertificateOptions(cert_path=tmp_path / "xrdp" / "cert.pem", key_path=tmp_path / "xrdp" / "key.pem")


async def issued_for(agent: AgentPeer, key) -> tuple[str, str]:
    answer = await request_rdp_certificate(agent, key)
    return answer["certificate"], answer["ca_certificate"]


async def test_the_agent_installs_a_private_key_and_the_chain_and_knows_when_to_renew(host_a, rdp_files):
    agent = AgentPeer(host_a)
    await agent.connect()
    key = rsa_key()
    certificate_pem, ca_pem = await issued_for(agent, key)

    rdpcert.install(rdp_files, key, certificate_pem, ca_pem, "host-a")

    assert stat.S_IMODE(rdp_files.key_path.stat().st_mode) == 0o600
    chain = x509.load_pem_x509_certificates(rdp_files.cert_path.read_bytes())
    assert [c.fingerprint(hashes.SHA256()).hex() for c in chain] == [
        fingerprint(certificate_pem), fingerprint(ca_pem)]
    installed = rdpcert.inspect(rdp_files, ca_pem.encode(), "host-a")
    assert installed.problem == "" and installed.sha256 == fingerprint(certificate_pem)
    # Renewal is due two thirds of the way from installation to expiry.
    expected = installed.installed_at + (installed.not_after - installed.installed_at) * 2 / 3
    assert installed.renew_at() == pytest.approx(expected)
    assert installed.installed_at <= time.time() < installed.renew_at() < installed.not_after
    await agent.close()


async def test_the_agent_refuses_to_install_what_was_issued_for_another_key(host_a, rdp_files):
    agent = AgentPeer(host_a)
    await agent.connect()
    certificate_pem, ca_pem = await issued_for(agent, rsa_key())

    with pytest.raises(StateError, match="another key"):
        rdpcert.install(rdp_files, rsa_key(), certificate_pem, ca_pem, "host-a")
    assert not rdp_files.cert_path.exists() and not rdp_files.key_path.exists()
    await agent.close()


def test_a_missing_foreign_or_expiring_certificate_is_due(rdp_files):
    assert "does not exist" in rdpcert.inspect(rdp_files, b"", "host-a").problem
    key, certificate_pem, other_ca_pem = issue_pair("host-a")
    rdp_files.cert_path.parent.mkdir(parents=True)
    rdp_files.cert_path.write_text(certificate_pem)
    rdp_files.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    _, _, our_ca_pem = issue_pair("host-a")
    assert rdpcert.inspect(rdp_files, our_ca_pem.encode(), "host-a").problem == (
        "the installed certificate was not issued by the control plane's CA")
    assert rdpcert.inspect(rdp_files, other_ca_pem.encode(), "host-b").problem == (
        "the installed certificate is not for host-b")
    fine = rdpcert.inspect(rdp_files, other_ca_pem.encode(), "host-a")
    assert fine.problem == ""
    # Installed long ago relative to its lifetime: due now.
    os.utime(rdp_files.cert_path, (fine.not_after - 3 * 86400, fine.not_after - 3 * 86400))
    assert rdpcert.inspect(rdp_files, other_ca_pem.encode(), "host-a").renew_at() < time.time()


def test_the_reload_command_runs_and_its_failure_is_reported(tmp_path):
    marker = tmp_path / "reloaded"
    assert asyncio.run(rdpcert.run_reload(f"touch {marker}")) == ""
    assert marker.exists()
    assert asyncio.run(rdpcert.run_reload("echo no such service >&2; exit 3")) == (
        "the reload command exited with 3: no such service")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file to another group needs root")
async def test_the_key_can_be_given_to_the_rdp_servers_group(host_a, tmp_path):
    daemon_gid = 1  # any group but ours: xrdp's own on a real host (--rdp-key-group xrdp)
    options = rdpcert.RdpCertificateOptions(cert_path=tmp_path / "cert.pem", key_path=tmp_path / "key.pem",
                                            key_group=daemon_gid)
    agent = AgentPeer(host_a)
    await agent.connect()
    key = rsa_key()
    certificate_pem, ca_pem = await issued_for(agent, key)

    rdpcert.install(options, key, certificate_pem, ca_pem, "host-a")

    status = options.key_path.stat()
    assert (stat.S_IMODE(status.st_mode), status.st_gid) == (0o640, daemon_gid)
    await agent.close()
