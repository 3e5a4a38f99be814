"""``register``: make a key, send a CSR with the pool's registration token, store what comes back."""
from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from hostagent.agent import state as agent_state

log = logging.getLogger("wvd-agent")

REGISTER_PATH = "/api/v1/hostagent/register/"
MAX_RESPONSE_BYTES = 64 * 1024


class RegistrationFailed(Exception):
    """Registration did not work; ``exit_code`` 2 means the server refused it (token, name, CSR),
    1 that it could not be reached or answered nonsense."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def register(server: str, token: str, name: str, state_dir: Path, *, ca_file: Path | None = None,
             timeout: float = 60.0) -> agent_state.AgentState:
    """Register this host as ``name`` and store its credentials in ``state_dir``."""
    try:
        server = agent_state.normalise_server_url(server)
    except ValueError as exc:
        raise RegistrationFailed(str(exc), 2) from None
    key = agent_state.new_key()
    body = json.dumps({"token": token, "name": name, "csr": agent_state.make_csr(key, name)}).encode()
    request = urllib.request.Request(server + REGISTER_PATH, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
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
