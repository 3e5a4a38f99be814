"""The agent program's parts: registration client, state directory, health checks, sessions, commands."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostagent.agent import AGENT_VERSION
from hostagent.agent import state as agent_state
from hostagent.agent.__main__ import main
from hostagent.agent.channel import Backoff
from hostagent.agent.commands import CommandContext, CommandRegistry, default_registry
from hostagent.agent.health import check_disk_space, check_rdp_listener
from hostagent.agent.sessions import (
    Outcome,
    UnsupportedSessions,
    UtmpSessions,
    parse_loginctl_show,
    parse_who,
)
from wire import hostchannel


def run(coroutine):
    return asyncio.run(coroutine)


# --- register ------------------------------------------------------------------------------------------


@pytest.fixture
def token(pooled_pool, our_ca, eager_tasks) -> str:
    value, _ = pooled_pool.issue_registration_token()
    return value


def test_register_stores_the_key_privately_and_the_certificate_and_ca(live_server, token, tmp_path):
    state_dir = tmp_path / "agent"
    assert main(["register", "--server", live_server.url, "--token", token, "--name", "host-a",
                 "--state-dir", str(state_dir)]) == 0
    state = agent_state.load_state(state_dir)
    assert (state.name, state.host_pool, state.server) == ("host-a", "pool-a", live_server.url)
    assert stat.S_IMODE((state_dir / state.key_file).stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / agent_state.STATE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    key, certificate, _ = state.load_credentials()
    assert certificate.subject.rfc4514_string() == "CN=host-a"
    assert state.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert state.channel_url == live_server.url.replace("http://", "ws://") + "/ws/hostagent/"


def test_register_with_an_expired_token_says_so_and_exits_2(live_server, pooled_pool, our_ca, eager_tasks,
                                                             tmp_path, caplog):
    token, _ = pooled_pool.issue_registration_token()
    pooled_pool.__class__.objects.filter(pk=pooled_pool.pk).update(registration_token_expires_at="2000-01-01T00:00Z")
    code = main(["register", "--server", live_server.url, "--token", token, "--state-dir", str(tmp_path / "a")])
    assert code == 2
    assert "The registration token has expired" in caplog.text
    assert not (tmp_path / "a" / agent_state.STATE_FILE).exists()


def test_register_with_a_wrong_token_exits_2(live_server, token, tmp_path, caplog):
    code = main(["register", "--server", live_server.url, "--token", "wvdreg_wrong", "--state-dir", str(tmp_path)])
    assert code == 2 and "not valid" in caplog.text


def test_register_with_an_unreachable_server_exits_1(tmp_path, caplog):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    code = main(["register", "--server", f"http://127.0.0.1:{port}", "--token", "t", "--state-dir", str(tmp_path)])
    assert code == 1 and "Cannot reach" in caplog.text


def test_run_without_registration_exits_2(tmp_path, caplog):
    assert main(["run", "--state-dir", str(tmp_path / "nothing")]) == 2
    assert "register this host first" in caplog.text


def test_the_agent_program_imports_no_django():
    code = ("import sys, hostagent.agent.__main__; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'channels', 'celery')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2], env={"PATH": os.environ.get("PATH", "")})
    assert output.stdout.strip() == "[]"


# --- state directory ------------------------------------------------------------------------------------


def issue_pair(name: str = "host-a"):
    """A key and a certificate for it, signed by a throwaway CA (the agent checks the chain)."""
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    ca_key = agent_state.new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Throwaway CA")])
    now = datetime.now(timezone.utc)
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1))
               .sign(ca_key, hashes.SHA256()))
    key = agent_state.new_key()
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return key, cert.public_bytes(pem).decode(), ca_cert.public_bytes(pem).decode()


def install(directory: Path, key, certificate_pem: str, ca_pem: str) -> agent_state.AgentState:
    return agent_state.install_credentials(directory, server="https://wvd.example.net/prefix", name="host-a",
                                           session_host_id=4, host_pool="pool-a", key=key,
                                           certificate_pem=certificate_pem, ca_pem=ca_pem)


def test_new_credentials_replace_the_old_ones_in_one_step(tmp_path):
    first = install(tmp_path, *issue_pair())
    second = install(tmp_path, *issue_pair())
    assert agent_state.load_state(tmp_path) == second
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [agent_state.STATE_FILE, agent_state.CA_FILE, second.key_file, second.certificate_file])
    assert first.key_file != second.key_file
    second.load_credentials()  # key and certificate belong together


def test_a_certificate_for_another_key_is_not_stored(tmp_path):
    _, certificate_pem, ca_pem = issue_pair()
    with pytest.raises(agent_state.StateError, match="another key"):
        install(tmp_path, agent_state.new_key(), certificate_pem, ca_pem)
    assert list(tmp_path.iterdir()) == []


def test_a_certificate_for_another_name_is_not_stored(tmp_path):
    with pytest.raises(agent_state.StateError, match="not 'host-a'"):
        install(tmp_path, *issue_pair("host-b"))


def test_a_certificate_the_ca_did_not_sign_is_not_stored(tmp_path):
    key, certificate_pem, _ = issue_pair()
    _, _, other_ca = issue_pair()
    with pytest.raises(agent_state.StateError, match="did not sign"):
        install(tmp_path, key, certificate_pem, other_ca)


@pytest.mark.parametrize("server, channel", [
    ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws/hostagent/"),
    ("https://wvd.example.net/", "wss://wvd.example.net/ws/hostagent/"),
    ("https://example.net/wvd", "wss://example.net/wvd/ws/hostagent/"),
])
def test_the_channel_url_follows_the_server_url(server, channel):
    assert agent_state.channel_url(agent_state.normalise_server_url(server)) == channel


@pytest.mark.parametrize("server", ["ftp://example.net", "example.net", "https://example.net/?x=1"])
def test_server_urls_other_than_http_are_refused(server):
    with pytest.raises(ValueError):
        agent_state.normalise_server_url(server)


# --- health checks ------------------------------------------------------------------------------------


def test_the_rdp_check_passes_when_the_listener_accepts():
    async def scenario():
        server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await check_rdp_listener("127.0.0.1", port)

    check = run(scenario())
    assert check["ok"] and check["fatal"] and check["name"] == "rdp_listener"


def test_the_rdp_check_fails_fatally_when_nothing_listens():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    check = run(check_rdp_listener("127.0.0.1", port))
    assert not check["ok"] and check["fatal"] and "refused" in check["detail"].lower()


def test_low_disk_space_is_a_non_fatal_failure(tmp_path):
    assert check_disk_space(tmp_path, 0.001)["ok"]
    low = check_disk_space(tmp_path, 99.999)
    assert not low["ok"] and not low["fatal"] and "below" in low["detail"]


# --- sessions ---------------------------------------------------------------------------------------------

WHO_OUTPUT = """\
alice    pts/0        2026-05-04 09:15   .          4242 (192.0.2.10)
bob      :10          2026-05-04 08:00   ?          5151 (:10)
carol    pts/3        Nov  5 07:30 00:12        6161
broken line
"""


def test_who_output_is_parsed_into_sessions_keyed_by_leader_pid():
    sessions = parse_who(WHO_OUTPUT, now=time.mktime((2026, 11, 25, 12, 0, 0, 0, 0, -1)))
    assert [(s.session_id, s.username, s.tty, s.display) for s in sessions] == [
        (4242, "alice", "/dev/pts/0", ""), (5151, "bob", "", ":10"), (6161, "carol", "/dev/pts/3", "")]
    assert time.localtime(sessions[2].started_at)[:5] == (2026, 11, 5, 7, 30)


LOGINCTL_OUTPUT = """\
Id=3
Name=alice
State=active
Leader=4242
TTY=pts/0
Display=
Class=user
Remote=yes

Id=c1
Name=gdm
State=online
Leader=900
TTY=
Display=:0
Class=greeter
Remote=no

Id=7
Name=bob
State=closing
Leader=5151
TTY=
Display=:10
Class=user
Remote=yes
"""


def test_loginctl_output_keeps_live_user_sessions_only():
    sessions = parse_loginctl_show(LOGINCTL_OUTPUT)
    assert [(s.session_id, s.username, s.tty, s.handle) for s in sessions] == [(4242, "alice", "/dev/pts/0", "3")]


UTMP_RECORD = struct.Struct("<h2xi32s4s32s256shhiii4i20s")  # glibc's struct utmp on 64-bit Linux
USER_PROCESS = 7


@pytest.fixture
def terminal_session(tmp_path):
    """A real login-like session: a process leading its own session on a pseudo-terminal, recorded
    in a utmp file as login programs do."""
    if UTMP_RECORD.size != 384 or not sys.platform.startswith("linux"):
        pytest.skip("utmp layout of 64-bit glibc Linux")
    master, slave = os.openpty()
    tty = os.ttyname(slave)
    leader = subprocess.Popen(["sleep", "300"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    line = tty.removeprefix("/dev/")
    utmp = tmp_path / "utmp"
    utmp.write_bytes(UTMP_RECORD.pack(USER_PROCESS, leader.pid, line.encode(), line[-4:].encode(), b"member",
                                      b"", 0, 0, 0, int(time.time()), 0, 0, 0, 0, 0, b""))
    os.set_blocking(master, False)
    yield UtmpSessions(utmp), leader, master
    leader.kill()
    leader.wait()
    os.close(master)
    os.close(slave)


def read_terminal(master: int) -> str:
    try:
        return os.read(master, 65536).decode(errors="replace")
    except BlockingIOError:
        return ""


def test_utmp_sessions_are_listed_messaged_and_logged_off(terminal_session):
    provider, leader, master = terminal_session
    sessions = run(provider.list_sessions())
    assert [(s.session_id, s.username) for s in sessions] == [(leader.pid, "member")]

    outcome = run(provider.send_message(leader.pid, "Maintenance", "Saving your work is wise.\x1b[2J"))
    assert outcome.status == "ok"
    shown = read_terminal(master)
    assert "Maintenance" in shown and "Saving your work is wise." in shown
    assert "\x1b" not in shown  # no terminal escape sequences get through

    assert run(provider.logoff(leader.pid)).status == "ok"
    assert leader.wait(timeout=30) is not None
    assert run(provider.list_sessions()) == []


def test_only_listed_sessions_can_be_acted_on(terminal_session):
    provider, leader, _ = terminal_session
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        outcome = run(provider.logoff(bystander.pid))
        assert outcome.status == "failed" and "no session" in outcome.message
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_disconnect_is_unsupported_on_linux(terminal_session):
    provider, leader, _ = terminal_session
    outcome = run(provider.disconnect(leader.pid))
    assert outcome.status == "unsupported" and "Linux" in outcome.message


def test_an_unsupported_provider_says_so_for_everything():
    provider = UnsupportedSessions("User sessions on Plan 9 are not supported by this agent yet.")
    assert run(provider.list_sessions()) is None
    for outcome in (run(provider.logoff(1)), run(provider.disconnect(1)), run(provider.send_message(1, "t", "x"))):
        assert outcome == Outcome("unsupported", provider.reason)


# --- commands --------------------------------------------------------------------------------------------


def context(tmp_path) -> CommandContext:
    async def no_exchange(command_id, csr, timeout):
        raise AssertionError("not used")

    key, certificate_pem, ca_pem = issue_pair()
    return CommandContext(state=install(tmp_path, key, certificate_pem, ca_pem),
                          sessions=UnsupportedSessions("No sessions here."), rdp_target=("127.0.0.1", 3389),
                          exchange_csr=no_exchange, on_credentials_changed=lambda state: None)


def test_an_unknown_command_is_answered_unsupported(tmp_path):
    # A newer server may send commands this agent does not know: it says so instead of ignoring them.
    result = run(default_registry().run(context(tmp_path), hostchannel.command("command-0001", "screenshot", {})))
    assert result["status"] == "unsupported"
    assert result["message"] == f"This agent (version {AGENT_VERSION}) does not implement the command 'screenshot'."


def test_a_connect_order_with_bad_arguments_fails_without_dialling(tmp_path):
    args = {"activity_id": "not-an-id", "relay_url": "http://elsewhere.example/", "host_ticket": "x"}
    result = run(default_registry().run(context(tmp_path), hostchannel.command("command-0002", "connect", args)))
    assert result["status"] == "failed" and "Bad arguments" in result["message"]


def test_a_command_with_bad_arguments_fails_without_running(tmp_path):
    result = run(default_registry().run(context(tmp_path), hostchannel.command("command-0001", "logoff", {})))
    assert result["status"] == "failed" and "session_id is missing" in result["message"]


def test_session_commands_go_through_the_provider(tmp_path):
    result = run(default_registry().run(context(tmp_path), hostchannel.command("command-0001", "logoff",
                                                                            {"session_id": 9})))
    assert (result["status"], result["message"]) == ("unsupported", "No sessions here.")


def test_a_registered_handler_is_used_and_its_failure_reported(tmp_path):
    registry = CommandRegistry()

    async def screenshot(ctx, command_id, args):
        raise ConnectionRefusedError("gateway refused")

    registry.register("screenshot", screenshot)
    result = run(registry.run(context(tmp_path), hostchannel.command("command-0001", "screenshot", {})))
    assert result["status"] == "failed" and "gateway refused" in result["message"]
    assert json.loads(hostchannel.encode(result))["type"] == "result"


def test_backoff_doubles_with_jitter_up_to_the_maximum():
    backoff = Backoff(initial=1.0, maximum=8.0)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, base in zip(delays, [1, 2, 4, 8, 8, 8]):
        assert base / 2 <= delay <= base
    backoff.reset()
    assert backoff.next_delay() <= 1.0
