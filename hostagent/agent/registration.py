"""``register``: make a key, send a CSR with the pool's registration token, store what comes back.

A brand-new host must trust the server before it sends its token. Either it is given the CA (``--ca-file``,
a copy of /ca.pem brought over a trusted path), or the CA's SHA-256 fingerprint (``--ca-fingerprint``, which
`serve` prints and the portal shows): then /ca.pem is fetched without verification, accepted only if its
fingerprint is the one given, and the registration itself is verified against it (pinning, like kubeadm's
discovery hash). Without either, the system's trust store decides.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from hostagent.agent import state as agent_state

log = logging.getLogger("wvd-agent")

REGISTER_PATH = "/api/v1/hostagent/register/"
CA_PATH = "/ca.pem"
MAX_RESPONSE_BYTES = 64 * 1024
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)


class RegistrationFailed(Exception):
    """Registration did not work; ``exit_code`` 2 means the server refused it (token, name, CSR),
    1 that it could not be reached or answered nonsense."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_fingerprint(value: str) -> str:
    """A SHA-256 fingerprint as lower-case hex: ``AB:CD:…`` (as ``serve`` and openssl print it) or plain hex,
    optionally prefixed ``sha256:``; raises ValueError otherwise."""
    text = value.strip().lower().removeprefix("sha256:").removeprefix("sha256=").replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"{value!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return text


def fetch_pinned_ca(server: str, fingerprint: str, *, timeout: float = 30.0) -> str:
    """The server's /ca.pem, fetched before anything is trusted and accepted only if its SHA-256 fingerprint
    is ``fingerprint``: its integrity comes from the pin, not from the connection."""
    try:
        wanted = parse_fingerprint(fingerprint)
    except ValueError as exc:
        raise RegistrationFailed(str(exc), 2) from None
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # nothing is believed from this connection but bytes we check
    try:
        with urllib.request.urlopen(server + CA_PATH, timeout=timeout, context=unverified) as response:
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise RegistrationFailed(f"Cannot fetch {server}{CA_PATH}: {getattr(exc, 'reason', exc)}", 1) from None
    match = _PEM_CERTIFICATE.search(body[:MAX_RESPONSE_BYTES])
    if match is None:
        raise RegistrationFailed(f"{server}{CA_PATH} is not a PEM certificate.", 1)
    pem = match.group(0).decode("ascii", "replace") + "\n"
    try:
        got = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    except ValueError:
        raise RegistrationFailed(f"{server}{CA_PATH} is not a PEM certificate.", 1) from None
    if got != wanted:
        raise RegistrationFailed(f"The CA served at {server}{CA_PATH} has the fingerprint {_colons(got)}, not the "
                                 f"{_colons(wanted)} you gave: not registering (wrong server, or someone in "
                                 "between).", 1)
    log.info("the server's CA matches the fingerprint given; trusting it")
    return pem


def _colons(hex_digest: str) -> str:
    return ":".join(hex_digest[i:i + 2] for i in range(0, len(hex_digest), 2)).upper()


def register(server: str, token: str, name: str, state_dir: Path, *, ca_file: Path | None = None,
             ca_fingerprint: str | None = None, timeout: float = 60.0) -> agent_state.AgentState:
    """Register this host as ``name`` and store its credentials in ``state_dir``."""
    try:
        server = agent_state.normalise_server_url(server)
    except ValueError as exc:
        raise RegistrationFailed(str(exc), 2) from None
    if ca_file and ca_fingerprint:
        raise RegistrationFailed("Give --ca-file or --ca-fingerprint, not both.", 2)
    if ca_fingerprint and not server.startswith("https://"):
        raise RegistrationFailed("--ca-fingerprint pins the CA of an https:// server; this one is not.", 2)
    pinned_ca = fetch_pinned_ca(server, ca_fingerprint, timeout=timeout) if ca_fingerprint else None
    key = agent_state.new_key()
    body = json.dumps({"token": token, "name": name, "csr": agent_state.make_csr(key, name)}).encode()
    request = urllib.request.Request(server + REGISTER_PATH, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    if pinned_ca is not None:
        context = ssl.create_default_context(cadata=pinned_ca)
    else:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            answer = _read_json(response.read(MAX_RESPONSE_BYTES + 1))
    except urllib.error.HTTPError as exc:
        detail = _read_json(exc.read(MAX_RESPONSE_BYTES + 1), strict=False)
        message = detail.get("detail") if isinstance(detail.get("detail"), str) else None
        if message is None and detail:
            message = "; ".join(f"{field}: {' '.join(map(str, errors)) if isinstance(errors, list) else errors}"
                                for field, errors in detail.items())
        message = message or exc.reason
        if 400 <= exc.code < 500:
            raise RegistrationFailed(f"The server refused the registration ({exc.code}): {message}", 2) from None
        raise RegistrationFailed(f"The server failed ({exc.code}): {message}", 1) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistrationFailed(f"Cannot reach {server}: {reason}", 1) from None
    try:
        return agent_state.install_credentials(
            state_dir, server=server, name=name, session_host_id=int(answer["session_host_id"]),
            host_pool=str(answer["host_pool"]), key=key, certificate_pem=str(answer["certificate"]),
            ca_pem=str(answer["ca_certificate"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistrationFailed(f"The server's answer is incomplete ({exc}).", 1) from None
    except agent_state.StateError as exc:
        raise RegistrationFailed(str(exc), 1) from None
    except OSError as exc:
        raise RegistrationFailed(f"Cannot write {state_dir}: {exc.strerror}", 1) from None


def _read_json(raw: bytes, *, strict: bool = True) -> dict:
    try:
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ValueError("too large")
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return value
    except ValueError:
        if strict:
            raise RegistrationFailed("The server's answer is not the JSON expected.", 1) from None
        return {}
