"""The agent's health checks, sent with every heartbeat.

- rdp_listener (fatal): the local RDP listener accepts a TCP connection; without it no user can
  connect, so the broker must not send anyone here.
- disk_space (non-fatal): free space on the system disk above a threshold; low space degrades
  sessions but does not stop them, so it asks for assistance.
- agent_version (informational): always passes; the detail is the version.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hostagent.agent import AGENT_VERSION
from wire.hostchannel import HealthCheck

RDP_CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class HealthSettings:
    rdp_host: str = "127.0.0.1"
    rdp_port: int = 3389
    disk_path: Path = Path("/")
    disk_min_free_percent: float = 10.0


async def check_rdp_listener(host: str, port: int, timeout: float = RDP_CONNECT_TIMEOUT) -> HealthCheck:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        return _check("rdp_listener", False, True, f"{host}:{port} did not accept a connection within {timeout:g} s")
    except OSError as exc:
        # asyncio's message repeats the address; the errno says what happened ("Connection refused").
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return _check("rdp_listener", False, True, f"{host}:{port}: {reason}")
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return _check("rdp_listener", True, True, f"{host}:{port} accepts connections")


def check_disk_space(path: Path, min_free_percent: float) -> HealthCheck:
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return _check("disk_space", False, False, f"{path}: {exc.strerror or exc}")
    free_percent = 100.0 * usage.free / usage.total if usage.total else 0.0
    detail = f"{path}: {usage.free / 2**30:.1f} GiB free ({free_percent:.0f}%)"
    if free_percent < min_free_percent:
        return _check("disk_space", False, False, f"{detail}, below {min_free_percent:g}%")
    return _check("disk_space", True, False, detail)


def check_agent_version() -> HealthCheck:
    return _check("agent_version", True, False, AGENT_VERSION)


async def run_checks(settings: HealthSettings) -> list[HealthCheck]:
    rdp = await check_rdp_listener(settings.rdp_host, settings.rdp_port)
    return [rdp, check_disk_space(settings.disk_path, settings.disk_min_free_percent), check_agent_version()]


def _check(name: str, ok: bool, fatal: bool, detail: str) -> HealthCheck:
    return {"name": name, "ok": ok, "fatal": fatal, "detail": detail[:300]}
