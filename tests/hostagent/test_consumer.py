"""The host channel consumer: authentication, validation, replacement, heartbeats and commands."""
from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from cryptography import x509

from broker.hostbus import aclose_host_channel, asend_to_host
from broker.models import SessionHost, SessionHostStatusChange, UserSession
from core import ca
from core.choices import CertificatePurpose
from core.models import Certificate
from hostagent import consumers
from hostagent.agent.state import make_csr, new_key
from hostagent.commands import arequest_command
from hostagent.models import HostChannel
from tests.hostagent.conftest import AgentPeer, HostIdentity, checks, issue_identity
from wire import hostchannel, proof

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def reload(identity):
    return SessionHost.objects.get(pk=identity.host.pk)


@database_sync_to_async
def snapshot(identity):
    host = SessionHost.objects.get(pk=identity.host.pk)
    return (host.status, host.status_reason, host.last_heartbeat_at, host.health_checks, host.certificate_id,
            host.agent_version, SessionHostStatusChange.objects.filter(session_host=host).count())


# --- Authentication ---------------------------------------------------------------------------------


async def test_it_welcomes_an_agent_that_signs_the_nonce_with_its_key(host_a):
    agent = AgentPeer(host_a)
    welcome = await agent.connect()
    assert welcome == {"type": "welcome", "session_host_id": host_a.host.pk, "name": "host-a",
                       "heartbeat_interval": 30}
    channel = await database_sync_to_async(HostChannel.objects.get)(session_host_id=host_a.host.pk)
    assert channel.certificate_id == host_a.host.certificate_id
    await agent.close()


async def test_it_refuses_a_signature_replayed_from_another_connection(host_a):
    first = AgentPeer(host_a)
    await first.open()
    captured = first.signature()  # what an eavesdropper saw on the first connection
    second = AgentPeer(host_a)
    await second.open()
    error = await second.hello(signature=captured)
    assert error["type"] == "error" and error["code"] == hostchannel.CLOSE_AUTH_FAILED
    assert "signature" in error["message"]
    _, code = await second.expect_close()
    assert code == hostchannel.CLOSE_AUTH_FAILED
    await first.close()


async def test_it_refuses_a_signature_made_with_another_key(host_a):
    agent = AgentPeer(host_a)
    await agent.open()
    error = await agent.hello(signature=agent.signature(key=new_key()))
    assert error["code"] == hostchannel.CLOSE_AUTH_FAILED
    assert (await agent.expect_close())[1] == hostchannel.CLOSE_AUTH_FAILED


async def test_it_refuses_a_revoked_certificate(host_a):
    record = await database_sync_to_async(Certificate.objects.get)(pk=host_a.host.certificate_id)
    await database_sync_to_async(ca.revoke)(record, "stolen laptop")
    before = await snapshot(host_a)
    agent = AgentPeer(host_a)
    await agent.open()
    error = await agent.hello()
    assert error["code"] == hostchannel.CLOSE_AUTH_FAILED and "revoked" in error["message"]
    assert (await agent.expect_close())[1] == hostchannel.CLOSE_AUTH_FAILED
    assert await snapshot(host_a) == before


async def test_it_refuses_a_certificate_of_another_purpose(host_a):
    # A host-rdp certificate for the very same host name and a key the agent really holds.
    key, pem, _ = await database_sync_to_async(issue_identity)("host-a", CertificatePurpose.HOST_RDP)
    agent = AgentPeer(host_a)
    await agent.open()
    signature = proof.sign_challenge(key, agent.nonce, x509.load_pem_x509_certificate(pem.encode()))
    error = await agent.hello(signature=signature, certificate_pem=pem)
    assert error["code"] == hostchannel.CLOSE_AUTH_FAILED and "host-rdp" in error["message"]


async def test_it_refuses_a_valid_certificate_not_bound_to_a_host(our_ca, pooled_pool):
    key, pem, _ = await database_sync_to_async(issue_identity)("stray-host")
    agent = AgentPeer(HostIdentity(host=None, key=key, certificate_pem=pem))
    await agent.open()
    error = await agent.hello()
    assert error["code"] == hostchannel.CLOSE_AUTH_FAILED and "not bound" in error["message"]


async def test_a_hello_waits_for_a_turn_when_the_instance_works_on_as_many_as_it_allows(host_a, host_b, settings):
    settings.HOST_HELLOS_IN_FLIGHT = 1
    turns = consumers.hello_turns()
    await turns.acquire()  # another agent's hello is being worked on
    agent = AgentPeer(host_a)
    await agent.open()
    await agent.send(hostchannel.hello(host_a.certificate_pem, agent.signature(), "1.0.0"))
    assert await agent.communicator.receive_nothing(timeout=0.5)  # no welcome while it waits
    assert not await database_sync_to_async(HostChannel.objects.filter(session_host_id=host_a.host.pk).exists)()
    turns.release()
    welcome = await agent.receive()
    assert welcome["type"] == "welcome" and welcome["session_host_id"] == host_a.host.pk
    # Its turn is given back: the next agent is welcomed without waiting for anyone.
    other = AgentPeer(host_b)
    assert (await other.connect())["session_host_id"] == host_b.host.pk
    await asyncio.gather(agent.close(), other.close())


async def test_a_hello_refused_for_lateness_while_it_waited_for_a_turn_never_reaches_the_database(
        host_a, settings, monkeypatch):
    settings.HOST_HELLOS_IN_FLIGHT = 1
    monkeypatch.setattr(consumers, "AUTH_TIMEOUT", 0.3)
    turns = consumers.hello_turns()
    await turns.acquire()
    before = await snapshot(host_a)
    agent = AgentPeer(host_a)
    await agent.open()
    await agent.send(hostchannel.hello(host_a.certificate_pem, agent.signature(), "1.0.0"))
    error, code = await agent.expect_close()
    assert code == hostchannel.CLOSE_AUTH_TIMEOUT and error["code"] == hostchannel.CLOSE_AUTH_TIMEOUT
    turns.release()
    await asyncio.sleep(0.3)  # the waiting hello has its turn now, and must find its channel refused
    assert not await database_sync_to_async(HostChannel.objects.filter(session_host_id=host_a.host.pk).exists)()
    assert await snapshot(host_a) == before
    await agent.close()


async def test_it_closes_a_channel_that_does_not_authenticate_in_time(host_a, monkeypatch):
    monkeypatch.setattr(consumers, "AUTH_TIMEOUT", 0.1)
    agent = AgentPeer(host_a)
    await agent.open()
    error, code = await agent.expect_close()
    assert code == hostchannel.CLOSE_AUTH_TIMEOUT and error["code"] == hostchannel.CLOSE_AUTH_TIMEOUT


async def test_it_wants_hello_before_anything_else(host_a):
    agent = AgentPeer(host_a)
    await agent.open()
    await agent.send(hostchannel.heartbeat(0, "1.0.0", checks(), "unsupported"))
    error, code = await agent.expect_close()
    assert code == hostchannel.CLOSE_PROTOCOL_ERROR and "first message must be hello" in error["message"]


# --- Malformed frames --------------------------------------------------------------------------------


@pytest.mark.parametrize("frame, code", [
    ("{not json", hostchannel.CLOSE_PROTOCOL_ERROR),
    ('{"type": "reboot"}', hostchannel.CLOSE_PROTOCOL_ERROR),
    ('{"type": "heartbeat", "seq": 1, "agent_version": "1.0.0", "checks": []}', hostchannel.CLOSE_PROTOCOL_ERROR),
    (json.dumps({"type": "shutdown", "reason": "x" * (hostchannel.MAX_FRAME_BYTES + 1)}), hostchannel.CLOSE_TOO_BIG),
    (b"\x00\x01binary", hostchannel.CLOSE_PROTOCOL_ERROR),
])
async def test_a_malformed_message_closes_the_channel_and_touches_no_host(host_a, host_b, frame, code):
    other = AgentPeer(host_b)
    await other.connect()
    await other.heartbeat(sessions=[{"session_id": 7, "username": "member", "state": "active"}])
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.heartbeat()
    before_a, before_b = await snapshot(host_a), await snapshot(host_b)

    if isinstance(frame, bytes):
        await agent.send_raw(data=frame)
    else:
        await agent.send_raw(text=frame)
    error, closed_with = await agent.expect_close()
    assert closed_with == code and error["code"] == code

    assert await snapshot(host_b) == before_b
    assert await database_sync_to_async(UserSession.objects.filter(session_host=host_b.host).count)() == 1
    await other.heartbeat()  # the other host's channel is still up
    # This host's record is intact: its heartbeat, checks and certificate are unchanged.
    assert (await snapshot(host_a))[2:6] == before_a[2:6]
    await other.close()
    await agent.close()


# --- One channel per host ------------------------------------------------------------------------------


async def test_a_second_channel_replaces_the_first(host_a):
    first = AgentPeer(host_a)
    await first.connect()
    await first.heartbeat()
    second = AgentPeer(host_a)
    await second.connect()
    error, code = await first.expect_close()
    assert code == hostchannel.CLOSE_REPLACED and error["code"] == hostchannel.CLOSE_REPLACED
    await first.close()  # the first's disconnect must not mark the host Unavailable: the second holds it
    await second.heartbeat()
    host = await reload(host_a)
    assert host.status == "available"
    channel = await database_sync_to_async(HostChannel.objects.get)(session_host_id=host_a.host.pk)
    result = asyncio.ensure_future(arequest_command(host_a.host.pk, "logoff", {"session_id": 1}, timeout=10))
    command = await second.receive()  # commands go to the second channel only
    assert command["type"] == "command" and command["command"] == "logoff"
    await second.send(hostchannel.result(command["id"], "ok", "Logged off."))
    assert (await result).status == "ok"
    assert channel.channel_name
    await second.close()


async def test_closing_the_channel_marks_the_host_unavailable(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.heartbeat()
    await agent.close()
    host = await reload(host_a)
    assert host.status == "unavailable" and "channel closed" in host.status_reason
    assert not await database_sync_to_async(HostChannel.objects.filter(session_host_id=host_a.host.pk).exists)()


async def test_an_agent_that_shuts_down_leaves_the_host_shut_down(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.heartbeat()
    await agent.send(hostchannel.shutdown("agent stopped (received SIGTERM)"))
    await agent.close()
    host = await reload(host_a)
    assert host.status == "shutdown" and "SIGTERM" in host.status_reason


async def test_a_host_registered_again_loses_its_old_channel(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    await aclose_host_channel(host_a.host.pk, hostchannel.CLOSE_CREDENTIALS_SUPERSEDED, "The host was registered again.")
    error, code = await agent.expect_close()
    assert code == hostchannel.CLOSE_CREDENTIALS_SUPERSEDED and "registered again" in error["message"]


# --- Heartbeats ------------------------------------------------------------------------------------------


async def test_a_heartbeat_updates_status_last_heartbeat_and_sessions(host_a, host_b, member):
    other = await database_sync_to_async(UserSession.objects.create)(
        session_host=host_b.host, session_id=1, username="outsider")
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.heartbeat(sessions=[
        {"session_id": 101, "username": "member", "state": "active", "started_at": 1700000000.0},
        {"session_id": 102, "username": "guest", "state": "active"},
    ])
    host = await reload(host_a)
    assert host.status == "available" and host.last_heartbeat_at is not None and host.agent_version == "1.0.0"
    assert [check["name"] for check in host.health_checks["checks"]] == ["rdp_listener", "disk_space", "agent_version"]
    sessions = await database_sync_to_async(list)(
        UserSession.objects.filter(session_host=host_a.host).order_by("session_id").values_list(
            "session_id", "username", "state", "user_id"))
    assert sessions == [(101, "member", "active", member.pk), (102, "guest", "active", None)]
    first_heartbeat = host.last_heartbeat_at

    await agent.heartbeat(sessions=[{"session_id": 101, "username": "member", "state": "disconnected"}])
    host = await reload(host_a)
    assert host.last_heartbeat_at > first_heartbeat
    sessions = await database_sync_to_async(list)(
        UserSession.objects.filter(session_host=host_a.host).values_list("session_id", "state"))
    assert sessions == [(101, "disconnected")]
    # Another host's sessions are never touched by this host's reports.
    assert await database_sync_to_async(UserSession.objects.filter(pk=other.pk).exists)()
    await agent.close()


async def test_failed_checks_set_the_status_with_the_reason_and_record_each_change(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.heartbeat(checks())
    await agent.heartbeat(checks(disk=False))
    host = await reload(host_a)
    assert host.status == "needs_assistance" and "disk_space: 3% free" in host.status_reason
    await agent.heartbeat(checks(rdp=False, disk=False))
    host = await reload(host_a)
    assert host.status == "unavailable" and host.status_reason.startswith("rdp_listener: refused")
    await agent.heartbeat(checks(rdp=False, disk=False))  # the same failure again: no new record
    await agent.heartbeat(checks())
    changes = await database_sync_to_async(list)(
        SessionHostStatusChange.objects.filter(session_host=host_a.host).order_by("at", "id")
        .values_list("old_status", "new_status"))
    assert changes == [("unavailable", "available"), ("available", "needs_assistance"),
                       ("needs_assistance", "unavailable"), ("unavailable", "available")]
    await agent.close()


async def test_unsupported_sessions_leave_the_rows_alone(host_a):
    await database_sync_to_async(UserSession.objects.create)(session_host=host_a.host, session_id=5, username="x")
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.heartbeat(sessions="unsupported")
    assert await database_sync_to_async(UserSession.objects.filter(session_host=host_a.host).count)() == 1
    assert (await reload(host_a)).health_checks["sessions"] == "unsupported"
    await agent.close()


# --- Commands -----------------------------------------------------------------------------------------


async def test_a_command_goes_to_the_agent_and_its_result_comes_back(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.heartbeat()
    pending = asyncio.ensure_future(arequest_command(
        host_a.host.pk, "message", {"session_id": 7, "title": "Maintenance", "text": "Back at noon"}, timeout=10))
    command = await agent.receive()
    assert command["type"] == "command" and command["command"] == "message"
    assert command["args"] == {"session_id": 7, "title": "Maintenance", "text": "Back at noon"}
    await agent.send(hostchannel.result(command["id"], "ok", "Shown on display :10.", {"display": ":10"}))
    result = await pending
    assert (result.status, result.message, result.data) == ("ok", "Shown on display :10.", {"display": ":10"})
    await agent.close()


async def test_an_unsupported_answer_is_passed_on_as_such(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    pending = asyncio.ensure_future(arequest_command(host_a.host.pk, "disconnect", {"session_id": 7}, timeout=10))
    command = await agent.receive()
    await agent.send(hostchannel.result(command["id"], "unsupported", "Not on Linux."))
    assert (await pending).status == "unsupported"
    await agent.close()


async def test_a_command_to_a_host_without_a_channel_is_offline(host_a):
    result = await arequest_command(host_a.host.pk, "logoff", {"session_id": 1}, timeout=10)
    assert result.status == "offline"


async def test_a_command_nobody_answers_times_out(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    result = await arequest_command(host_a.host.pk, "logoff", {"session_id": 1}, timeout=0.2)
    assert result.status == "timeout"
    await agent.close()


@pytest.mark.skipif(not hasattr(get_channel_layer(), "groups"),
                    reason="forgets the groups of the in-memory layer; on Redis the real restart is "
                           "tests/cluster/test_faults.py's Redis test")
async def test_a_channel_layer_that_forgot_the_hosts_group_reaches_it_again_after_one_heartbeat(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    try:
        await agent.heartbeat()
        # What a Redis restart does to every group while the host's channel lives on.
        get_channel_layer().groups.clear()
        assert (await arequest_command(host_a.host.pk, "logoff", {"session_id": 1}, timeout=0.2)).status == "timeout"

        await agent.heartbeat()
        pending = asyncio.ensure_future(arequest_command(host_a.host.pk, "logoff", {"session_id": 1}, timeout=10))
        command = await agent.receive()
        assert command["command"] == "logoff"
        await agent.send(hostchannel.result(command["id"], "ok"))
        assert (await pending).status == "ok"
    finally:
        await agent.close()


async def test_a_command_pending_when_the_channel_closes_fails_at_once(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    pending = asyncio.ensure_future(arequest_command(host_a.host.pk, "logoff", {"session_id": 1}, timeout=30))
    await agent.receive()
    await agent.close()
    result = await pending
    assert result.status == "failed" and "closed" in result.message


async def test_send_to_host_delivers_a_typed_message(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    await asend_to_host(host_a.host.pk, hostchannel.command("fire-and-forget-1", "logoff", {"session_id": 3}))
    command = await agent.receive()
    assert command["id"] == "fire-and-forget-1"
    # The agent's result for it is simply not waited for.
    await agent.send(hostchannel.result("fire-and-forget-1", "ok"))
    await agent.heartbeat()
    await agent.close()


async def test_send_to_host_refuses_a_malformed_message_in_the_producer(host_a):
    with pytest.raises(hostchannel.ProtocolError):
        await asend_to_host(host_a.host.pk, {"type": "command", "id": "x", "command": "logoff", "args": {}})


async def test_a_certificate_renewal_round_trip_rebinds_the_host(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    old_id = host_a.host.certificate_id
    pending = asyncio.ensure_future(arequest_command(host_a.host.pk, "renew-certificate", {}, timeout=10))
    command = await agent.receive()
    assert command["command"] == "renew-certificate"
    key = new_key()
    await agent.send(hostchannel.certificate_request(command["id"], make_csr(key, "host-a")))
    issued = await agent.receive()
    assert issued["type"] == "certificate" and issued["id"] == command["id"]
    await agent.send(hostchannel.result(command["id"], "ok", "Certificate renewed."))
    assert (await pending).ok
    host = await reload(host_a)
    assert host.certificate_id != old_id
    new = await database_sync_to_async(Certificate.objects.get)(pk=host.certificate_id)
    assert new.pem == issued["certificate"] and new.purpose == "host-agent"
    old = await database_sync_to_async(Certificate.objects.get)(pk=old_id)
    assert old.revoked_at is not None and old.renewed_by_id == new.pk
    await agent.close()

    # The next channel authenticates with the new key and certificate.
    renewed = AgentPeer(HostIdentity(host=host_a.host, key=key, certificate_pem=issued["certificate"]))
    await renewed.connect()
    await renewed.close()


async def test_a_renewal_the_agent_could_not_store_keeps_the_old_certificate(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    old_id = host_a.host.certificate_id
    pending = asyncio.ensure_future(arequest_command(host_a.host.pk, "renew-certificate", {}, timeout=10))
    command = await agent.receive()
    await agent.send(hostchannel.certificate_request(command["id"], make_csr(new_key(), "host-a")))
    issued = await agent.receive()
    await agent.send(hostchannel.result(command["id"], "failed", "Disk full."))
    assert (await pending).status == "failed"
    assert (await reload(host_a)).certificate_id == old_id
    assert (await database_sync_to_async(Certificate.objects.get)(pem=issued["certificate"])).revoked_at is not None
    await agent.close()
    again = AgentPeer(host_a)
    await again.connect()
    await again.close()


async def test_a_renewal_csr_for_another_name_is_refused(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    pending = asyncio.ensure_future(arequest_command(host_a.host.pk, "renew-certificate", {}, timeout=10))
    command = await agent.receive()
    await agent.send(hostchannel.certificate_request(command["id"], make_csr(new_key(), "host-b")))
    refused = await agent.receive()
    assert refused["type"] == "certificate_refused" and "host-a" in refused["message"]
    result = await pending
    assert result.status == "failed" and "refused" in result.message
    await agent.heartbeat()  # the channel stays up
    await agent.close()


async def test_a_csr_nobody_asked_for_closes_the_channel(host_a):
    agent = AgentPeer(host_a)
    await agent.connect()
    await agent.send(hostchannel.certificate_request("unasked-for-1", make_csr(new_key(), "host-a")))
    _, code = await agent.expect_close()
    assert code == hostchannel.CLOSE_PROTOCOL_ERROR
    assert (await reload(host_a)).certificate_id == host_a.host.certificate_id
