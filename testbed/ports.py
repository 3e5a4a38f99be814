"""Loopback ports for the end-to-end test bed: pick a free one, see who listens on one.

Linux only (reads /proc/net/tcp*), like the rest of the test bed.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

_LISTEN_STATE = "0A"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel reports free right now (bind port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if len(fields) < 10 or fields[3] != _LISTEN_STATE:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(fields[9])
    return inodes


def is_listening(port: int) -> bool:
    """Whether any socket on this machine listens on TCP ``port`` (any address, v4 or v6).

    Read from /proc rather than by connecting, so probing never opens a session on the server.
    """
    return bool(_listening_inodes(port))


def listener_processes(port: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of the processes holding a listening socket on ``port``.

    Used to name the culprit in an error message; processes we may not inspect are skipped.
    """
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found: list[tuple[int, str]] = []
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        if not _holds_any(entry.name, wanted):
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        found.append((int(entry.name), cmdline))
    return found


def _holds_any(pid: str, targets: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                return True
        except OSError:
            continue  # closed while we looked
    return False
