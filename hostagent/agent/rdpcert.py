"""The host's RDP certificate: what the local RDP server presents to clients on the nested TLS (step 11).

With ``run --rdp-cert PATH --rdp-key PATH [--rdp-reload CMD]`` the agent keeps a certificate from the
control plane's CA there:

* it asks for one (a new RSA key made here, a CSR over the host channel) when the file is missing, cannot
  be read, was not issued by our CA, or has passed two thirds of the time from its installation to its
  expiry; the server decides the names (the pool's name, which is the ``full address`` in every .rdp file,
  and the host's own name);
* it writes the key (mode 0600, or 0640 for ``--rdp-key-group``) and the chain (leaf, then the CA) each in one rename, then runs the reload
  command, if any (xrdp reads both files on every connection and needs none);
* it asks its own RDP listener which certificate it presents (an X.224 request for TLS, then a TLS
  handshake that only reads the certificate) and reports that fingerprint, so the portal and every
  Connection record show what clients are given, not what the agent hopes.

Nothing here imports Django: it runs on the session host.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hostagent.agent import state as agent_state
from wire import x224

log = logging.getLogger("wvd-agent")

RSA_BITS = 2048  # what every RDP client accepts (mstsc, FreeRDP, thin clients)
RENEW_AT_FRACTION = 2 / 3
# Look again this often even when nothing is due: an admin may have put another certificate in place.
RECHECK_SECONDS = 600.0
RETRY_SECONDS = 60.0
MIN_WAIT_SECONDS = 1.0
RELOAD_TIMEOUT = 60.0
PROBE_TIMEOUT = 10.0
CERTIFICATE_WAIT = 60.0

# Sends a CSR under a request id and returns (certificate PEM, CA PEM); raises CertificateExchangeFailed.
Exchange = Callable[[str, str, float], Awaitable[tuple[str, str]]]
Report = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class RdpCertificateOptions:
    cert_path: Path
    key_path: Path
    reload_command: str | None = None
    key_group: int | None = None  # a gid: the key is written 0640 for it (xrdp runs as user xrdp)


@dataclass(frozen=True)
class Installed:
    """The certificate in ``cert_path`` as the agent reads it; ``problem`` says why a new one is needed."""

    sha256: str = ""
    not_after: float = 0.0
    installed_at: float = 0.0
    problem: str = ""

    def renew_at(self) -> float:
        return self.installed_at + (self.not_after - self.installed_at) * RENEW_AT_FRACTION


def inspect(options: RdpCertificateOptions, ca_pem: bytes, host_name: str) -> Installed:
    """Read the installed certificate and say whether it is one of ours, for this host, with its key."""
    try:
        data = options.cert_path.read_bytes()
        installed_at = options.cert_path.stat().st_mtime
        key_data = options.key_path.read_bytes()
    except FileNotFoundError as exc:
        return Installed(problem=f"{exc.filename} does not exist")
    except OSError as exc:
        return Installed(problem=f"cannot read {exc.filename}: {exc.strerror}")
    try:
        certificate = x509.load_pem_x509_certificate(data)
        authority = x509.load_pem_x509_certificate(ca_pem)
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        return Installed(problem="the certificate or key file is not PEM the agent can read")
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return Installed(sha256=sha256, problem="the installed certificate was not issued by the control plane's CA")
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        return Installed(sha256=sha256, problem="the key file does not belong to the certificate")
    names = [str(attr.value).lower() for attr in certificate.subject]
    if host_name.lower() not in names:
        return Installed(sha256=sha256, problem=f"the installed certificate is not for {host_name}")
    not_after = certificate.not_valid_after_utc.timestamp()
    if not_after <= time.time():
        return Installed(sha256=sha256, problem="the installed certificate has expired")
    return Installed(sha256=sha256, not_after=not_after, installed_at=min(installed_at, time.time()))


def install(options: RdpCertificateOptions, key: rsa.RSAPrivateKey, certificate_pem: str, ca_pem: str,
            host_name: str) -> x509.Certificate:
    """Check what the server issued (our key, this host, signed by the CA) and write key and chain."""
    certificate = agent_state.check_issued(key, certificate_pem, ca_pem, host_name)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    chain = certificate.public_bytes(serialization.Encoding.PEM) + ca_pem.strip().encode() + b"\n"
    for path in (options.key_path, options.cert_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    # The key first: a server that reads the pair between the two renames meets the new key with the old
    # certificate for one handshake at most, never a certificate without its key for longer.
    agent_state.write_atomic(options.key_path, key_pem, 0o600 if options.key_group is None else 0o640,
                             group=options.key_group)
    agent_state.write_atomic(options.cert_path, chain, 0o644)
    return certificate


async def run_reload(command: str) -> str:
    """Run the reload command through the shell; returns "" or why it failed."""
    try:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
    except OSError as exc:
        return f"the reload command could not start: {exc.strerror or exc}"
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RELOAD_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return f"the reload command did not finish within {RELOAD_TIMEOUT:g} s"
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return f"the reload command exited with {process.returncode}: {tail[0][:150]}"
    return ""


async def presented_certificate(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> tuple[str, str]:
    """Ask the RDP listener at host:port for its certificate: (SHA-256 hex, "") or ("", why not)."""
    try:
        return await asyncio.wait_for(_probe(host, port), timeout)
    except asyncio.TimeoutError:
        return "", f"{host}:{port} did not answer within {timeout:g} s"
    except (OSError, ssl.SSLError) as exc:
        return "", f"{host}:{port}: {exc.strerror or exc}" if isinstance(exc, OSError) else f"TLS: {exc}"
    except x224.X224Error as exc:
        return "", f"{host}:{port} did not answer as an RDP server: {exc}"


async def _probe(host: str, port: int) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(x224.connection_request(x224.PROTOCOL_SSL | x224.PROTOCOL_HYBRID))
        header = await reader.readexactly(x224.TPKT_HEADER)
        packet = header + await reader.readexactly(x224.packet_length(header) - x224.TPKT_HEADER)
        confirm = x224.parse_connection_confirm(packet)
        if confirm.failure or confirm.selected_protocol in (None, x224.PROTOCOL_RDP):
            why = confirm.failure or "it selected standard RDP security, without TLS"
            return "", f"{host}:{port} refused TLS ({why})"
        # Only to read the certificate the listener presents, whoever issued it: the fingerprint is compared
        # with the installed one and the server's record, which is a stricter check than a chain.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        await writer.start_tls(context, server_hostname=None)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return hashlib.sha256(der).hexdigest(), ""
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


class RdpCertificateKeeper:
    """One pass of ``step`` per wake-up while the channel is up; it returns how long to sleep."""

    def __init__(self, options: RdpCertificateOptions, rdp_target: tuple[str, int]) -> None:
        self.options = options
        self.rdp_target = rdp_target

    async def step(self, state: agent_state.AgentState, exchange: Exchange, report: Report) -> float:
        ca_pem = await asyncio.to_thread(state.ca_path.read_bytes)
        installed = await asyncio.to_thread(inspect, self.options, ca_pem, state.name)
        due = installed.problem or (time.time() >= installed.renew_at() and "two thirds of its life have passed")
        wait = RECHECK_SECONDS
        if due:
            log.info("RDP certificate: asking for a new one (%s)", due)
            problem = await self._renew(state, exchange)
            if problem:
                log.warning("RDP certificate: %s", problem)
                await report(installed.sha256 if not installed.problem else "", problem)
                return RETRY_SECONDS
            installed = await asyncio.to_thread(inspect, self.options, ca_pem, state.name)
        if not installed.problem:
            wait = installed.renew_at() - time.time()
        presented, why = await presented_certificate(*self.rdp_target)
        if why:
            detail = f"The agent could not read the listener's certificate: {why}"
        elif installed.problem:
            detail = f"The agent's certificate is not in place: {installed.problem}"
        elif presented != installed.sha256:
            detail = (f"The listener does not present the certificate in {self.options.cert_path}: "
                      "point the RDP server at it, or give the agent a --rdp-reload command.")
        else:
            detail = f"Presented by {self.rdp_target[0]}:{self.rdp_target[1]}."
        if detail.startswith("Presented"):
            log.debug("RDP certificate %s is presented", presented)
        else:
            log.warning("RDP certificate: %s", detail)
        await report(presented, detail)
        return max(MIN_WAIT_SECONDS, min(wait, RECHECK_SECONDS))

    async def _renew(self, state: agent_state.AgentState, exchange: Exchange) -> str:
        key = await asyncio.to_thread(rsa.generate_private_key, 65537, RSA_BITS)
        request_id = secrets.token_urlsafe(12)
        try:
            certificate_pem, ca_pem = await exchange(request_id, agent_state.make_csr(key, state.name),
                                                     CERTIFICATE_WAIT)
        except Exception as exc:  # noqa: BLE001 - CertificateExchangeFailed and the channel's own errors
            return f"no certificate: {exc}"
        try:
            certificate = await asyncio.to_thread(install, self.options, key, certificate_pem, ca_pem, state.name)
        except agent_state.StateError as exc:
            return f"the server's certificate was not installed: {exc}"
        except OSError as exc:
            return f"cannot write {exc.filename}: {exc.strerror}"
        log.info("RDP certificate installed in %s: serial %x, valid until %s", self.options.cert_path,
                 certificate.serial_number, certificate.not_valid_after_utc.isoformat())
        if self.options.reload_command:
            problem = await run_reload(self.options.reload_command)
            if problem:
                return problem
            log.info("RDP certificate: reload command ran")
        return ""

