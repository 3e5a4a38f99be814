"""Start and stop the test bed's child processes: each in its own process group, output in a log file.

Everything is stopped by the ids we started (process group of a child we launched, or PIDs found as
its descendants), never by name, because other people's processes share this machine.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

DEFAULT_GRACE_SECONDS = 10.0


def start_logged(
    argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start ``argv`` in a new session (so its whole group can be signalled), stdout+stderr to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def read_log(path: Path, limit: int = 200_000) -> str:
    """The last ``limit`` characters of a log file ('' when it does not exist yet)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[-limit:]


def group_members(pgid: int) -> set[int]:
    """Living (non-zombie) processes in process group ``pgid``."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        # after the command name: state, ppid, pgrp
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            found.add(int(entry.name))
    return found


def group_alive(pgid: int) -> bool:
    """Whether any living process is left in process group ``pgid`` (zombies do not count)."""
    return bool(group_members(pgid))


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    fields = _stat_fields(str(pid))
    return bool(fields) and fields[0] != "Z"


def _stat_fields(pid: str) -> list[str]:
    """Fields of /proc/PID/stat after the command name (state first); [] when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def stop_group(process: subprocess.Popen, grace: float = DEFAULT_GRACE_SECONDS) -> int:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds; return the exit code.

    The exit code is negative when a signal ended the process (``-9`` means it had to be killed).
    """
    pgid = process.pid  # start_new_session made the child its group leader
    if process.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            process.wait(timeout=grace)
    # Grandchildren that outlived the leader still carry its group id.
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGTERM)
        _wait_until(lambda: not group_alive(pgid), grace)
        _signal_group(pgid, signal.SIGKILL)
    return process.returncode


def descendants(pid: int) -> set[int]:
    """All living descendants of ``pid`` (children that called setsid() included)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if not fields:
            continue
        parent = int(fields[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def pids_of_user(uid: int) -> set[int]:
    """PIDs of every process whose real uid is ``uid``."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for line in Path(f"/proc/{entry.name}/status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid:
                        found.add(int(entry.name))
                    break
        except OSError:
            continue
    return found


def stop_pids(pids: Iterable[int], grace: float = DEFAULT_GRACE_SECONDS) -> None:
    """SIGTERM the given PIDs, then SIGKILL those still alive after ``grace`` seconds."""
    pids = set(pids)
    for pid in pids:
        _signal_pid(pid, signal.SIGTERM)
    _wait_until(lambda: not any(pid_alive(pid) for pid in pids), grace)
    for pid in pids:
        if pid_alive(pid):
            _signal_pid(pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_until(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
