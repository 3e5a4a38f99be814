"""User sessions on this host: list them, log off, disconnect, send a message.

A small provider interface with the implementations this OS allows:
- ``LoginctlSessions``: systemd-logind (``loginctl``), where systemd runs;
- ``UtmpSessions``: the utmp login records (``who -u``), which xrdp's sesman and login programs
  write, where there is no logind;
- ``UnsupportedSessions``: everywhere else (and on Windows, until a WTS implementation exists).
What a provider cannot do it answers with an "unsupported" outcome, never a pretend success.

A session's id is the PID of its leader process: unique on the host while the session lives, and
an integer as the protocol wants. Every operation acts only on a session the provider lists at that
moment, so the server can never make the agent signal an arbitrary process.
"""
from __future__ import annotations

import asyncio
import logging
import os
import platform
import re
import shutil
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from wire.hostchannel import SessionReport

log = logging.getLogger("wvd-agent")

COMMAND_TIMEOUT = 10.0
MAX_OUTPUT = 256 * 1024
LOGOFF_GRACE = 5.0
MESSAGE_TIMEOUT = 300  # seconds an X message box stays up
TTY_PATH = re.compile(r"^/dev/(pts/\d{1,6}|tty\d{1,3})$")
DISPLAY = re.compile(r"^:\d{1,4}(\.\d{1,2})?$")
# Keep terminal control sequences out of a message written to someone's terminal.
UNPRINTABLE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Outcome:
    status: Literal["ok", "failed", "unsupported"]
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Session:
    session_id: int  # the leader's PID
    username: str
    state: Literal["active", "disconnected"]
    tty: str = ""  # /dev/pts/N when the session has a terminal
    display: str = ""  # :N when it has an X display
    started_at: float | None = None
    handle: str = ""  # the provider's own id (loginctl's session id)

    def report(self) -> SessionReport:
        report: SessionReport = {"session_id": self.session_id, "username": self.username, "state": self.state}
        if self.started_at is not None:
            report["started_at"] = self.started_at
        return report


class SessionProvider(Protocol):
    name: str

    async def list_sessions(self) -> list[Session] | None:
        """The user sessions now, or None when this provider cannot see them."""

    async def logoff(self, session_id: int) -> Outcome: ...

    async def disconnect(self, session_id: int) -> Outcome: ...

    async def send_message(self, session_id: int, title: str, text: str) -> Outcome: ...


async def run_command(*argv: str, timeout: float = COMMAND_TIMEOUT,
                      env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a program, bounded in time and output; returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LC_ALL": "C", **(env or {})},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return -1, "", f"{argv[0]} did not finish within {timeout:g} s"
    return (process.returncode, stdout[:MAX_OUTPUT].decode(errors="replace"),
            stderr[:MAX_OUTPUT].decode(errors="replace"))


def clean_message(title: str, text: str) -> str:
    body = UNPRINTABLE.sub("", text.replace("\r\n", "\n"))
    heading = UNPRINTABLE.sub("", title.replace("\n", " ")).strip()
    return f"{heading}\n\n{body}" if heading else body


class UnsupportedSessions:
    """No way to see or act on user sessions here."""

    name = "unsupported"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def list_sessions(self) -> list[Session] | None:
        return None

    async def logoff(self, session_id: int) -> Outcome:
        return Outcome("unsupported", self.reason)

    async def disconnect(self, session_id: int) -> Outcome:
        return Outcome("unsupported", self.reason)

    async def send_message(self, session_id: int, title: str, text: str) -> Outcome:
        return Outcome("unsupported", self.reason)


class _LinuxSessions(ABC):
    """What the Linux providers share: finding a listed session, messages, disconnect."""

    name = "linux"
    disconnect_reason = ("Disconnecting a session while keeping it running is not supported on Linux: "
                         "neither logind nor xrdp offers a way to drop only the client.")

    @abstractmethod
    async def list_sessions(self) -> list[Session] | None:
        """The user sessions now, or None when they cannot be listed at the moment."""

    @abstractmethod
    async def logoff(self, session_id: int) -> Outcome:
        """End a listed session."""

    async def _find(self, session_id: int) -> Session | Outcome:
        sessions = await self.list_sessions()
        if sessions is None:
            return Outcome("unsupported", "This host cannot list its user sessions.")
        for session in sessions:
            if session.session_id == session_id:
                return session
        return Outcome("failed", f"There is no session {session_id} on this host.")

    async def disconnect(self, session_id: int) -> Outcome:
        return Outcome("unsupported", self.disconnect_reason)

    async def send_message(self, session_id: int, title: str, text: str) -> Outcome:
        session = await self._find(session_id)
        if isinstance(session, Outcome):
            return session
        message = clean_message(title, text)
        if session.display and DISPLAY.match(session.display) and shutil.which("xmessage"):
            return await _show_x_message(session, message)
        if session.tty and TTY_PATH.match(session.tty):
            return _write_to_terminal(session.tty, message)
        return Outcome("unsupported", f"Session {session_id} has neither a terminal nor an X display "
                       "(with xmessage installed) to show a message on.")


def _write_to_terminal(tty: str, message: str) -> Outcome:
    data = ("\r\n" + message.replace("\n", "\r\n") + "\r\n").encode("utf-8", "replace")
    try:
        fd = os.open(tty, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        return Outcome("failed", f"Cannot open {tty}: {exc.strerror}")
    try:
        written = os.write(fd, data)
    except OSError as exc:
        return Outcome("failed", f"Cannot write to {tty}: {exc.strerror}")
    finally:
        os.close(fd)
    return Outcome("ok", f"Written to {tty}.", {"bytes": written})


_message_boxes: set[asyncio.subprocess.Process] = set()


async def _show_x_message(session: Session, message: str) -> Outcome:
    """Open an xmessage box on the session's display, as the session's user, and leave it up."""
    argv = ["xmessage", "-center", "-timeout", str(MESSAGE_TIMEOUT), "-display", session.display, message]
    if os.geteuid() == 0 and session.username != "root":
        if not shutil.which("runuser"):
            return Outcome("unsupported", "runuser is needed to show a message as the session's user.")
        home = Path("~" + session.username).expanduser()
        argv = ["runuser", "-u", session.username, "--", "env", f"XAUTHORITY={home / '.Xauthority'}", *argv]
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        # xmessage fails at once when it cannot open the display; otherwise it stays up.
        await asyncio.wait_for(process.wait(), 1.5)
    except asyncio.TimeoutError:
        _message_boxes.add(process)
        asyncio.ensure_future(process.wait()).add_done_callback(lambda _: _message_boxes.discard(process))
        return Outcome("ok", f"Shown on display {session.display}.")
    error = (await process.stderr.read(2000)).decode(errors="replace").strip()
    if process.returncode == 0:
        return Outcome("ok", f"Shown on display {session.display}.")
    return Outcome("failed", f"xmessage on {session.display} failed: {error or process.returncode}")


# --- utmp (who -u) ---------------------------------------------------------------------------------

WHO_LINE = re.compile(
    r"^(?P<user>\S+)\s+(?P<line>\S+)\s+"
    r"(?P<date>\d{4}-\d{2}-\d{2} \d{2}:\d{2}|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2})"
    r"\s+(?P<idle>\S+)\s+(?P<pid>\d+)(?:\s+\((?P<comment>[^)]*)\))?\s*$"
)


def _login_time(text: str, now: float | None = None) -> float | None:
    """``who``'s login time: ISO in most locales, ``Mon DD HH:MM`` (no year) in the C locale."""
    try:
        if text[0].isdigit():
            return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M"))
        now = time.time() if now is None else now
        year = time.localtime(now).tm_year
        moment = time.mktime(time.strptime(f"{year} {' '.join(text.split())}", "%Y %b %d %H:%M"))
        # Without a year, a date ahead of now is last year's.
        return moment if moment <= now + 86400 else time.mktime(
            time.strptime(f"{year - 1} {' '.join(text.split())}", "%Y %b %d %H:%M"))
    except (ValueError, OverflowError):
        return None


def parse_who(output: str, now: float | None = None) -> list[Session]:
    """Parse ``who -u``: ``user line login-time idle pid (comment)``, one login per line."""
    sessions: dict[int, Session] = {}
    for line in output.splitlines():
        match = WHO_LINE.match(line)
        if not match:
            continue
        pid = int(match["pid"])
        if pid <= 1 or pid in sessions:
            continue
        tty_line, comment = match["line"], match["comment"] or ""
        display = tty_line if DISPLAY.match(tty_line) else (comment if DISPLAY.match(comment) else "")
        sessions[pid] = Session(
            session_id=pid, username=match["user"], state="active",
            tty=f"/dev/{tty_line}" if TTY_PATH.match(f"/dev/{tty_line}") else "", display=display,
            started_at=_login_time(match["date"], now),
        )
    return list(sessions.values())


class UtmpSessions(_LinuxSessions):
    """Sessions from the utmp login records. Log off ends the leader's process session (SIGTERM,
    then SIGKILL after a grace period)."""

    name = "utmp"

    def __init__(self, utmp_path: Path | None = None) -> None:
        self.utmp_path = utmp_path

    async def list_sessions(self) -> list[Session] | None:
        argv = ["who", "-u"] + ([str(self.utmp_path)] if self.utmp_path else [])
        code, output, error = await run_command(*argv)
        if code != 0:
            log.warning("who -u failed: %s", error.strip()[:200])
            return None
        # Records of processes that died without logging out are stale: leave them out.
        return [session for session in parse_who(output) if _process_exists(session.session_id)]

    async def logoff(self, session_id: int) -> Outcome:
        session = await self._find(session_id)
        if isinstance(session, Outcome):
            return session
        try:
            sid = os.getsid(session.session_id)
        except ProcessLookupError:
            return Outcome("ok", f"Session {session_id} had already ended.")
        if sid <= 1 or sid == os.getsid(0):
            return Outcome("failed", f"Session {session_id} shares the agent's own process session.")
        _signal_session(sid, signal.SIGTERM)
        deadline = time.monotonic() + LOGOFF_GRACE
        while time.monotonic() < deadline and _process_exists(session.session_id):
            await asyncio.sleep(0.1)
        if _process_exists(session.session_id):
            _signal_session(sid, signal.SIGKILL)
        return Outcome("ok", f"Logged off {session.username} (session {session_id}).")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has ended; only its parent has not collected it yet.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _signal_session(sid: int, signum: int) -> None:
    """Signal every process whose session id is ``sid`` (what ``pkill -s`` does)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == sid:
                os.kill(int(entry.name), signum)
        except (ProcessLookupError, PermissionError):
            continue


# --- systemd-logind (loginctl) ---------------------------------------------------------------------

LOGINCTL_PROPERTIES = "Id,Name,State,Leader,TTY,Display,Class,Remote"


def parse_loginctl_show(output: str) -> list[Session]:
    """Parse ``loginctl show-session ID... --property=...``: blocks of key=value, blank-line separated."""
    sessions: list[Session] = []
    for block in re.split(r"\n\s*\n", output.strip()):
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if values.get("Class", "user") != "user" or values.get("State") == "closing":
            continue
        try:
            leader = int(values.get("Leader", "0"))
        except ValueError:
            continue
        if leader <= 1 or not values.get("Name"):
            continue
        tty = values.get("TTY", "")
        sessions.append(Session(
            session_id=leader, username=values["Name"], state="active",
            tty=f"/dev/{tty}" if tty and TTY_PATH.match(f"/dev/{tty}") else "",
            display=values.get("Display", "") if DISPLAY.match(values.get("Display", "")) else "",
            handle=values.get("Id", ""),
        ))
    return sessions


class LoginctlSessions(_LinuxSessions):
    """Sessions from systemd-logind; log off is ``loginctl terminate-session``."""

    name = "loginctl"

    async def list_sessions(self) -> list[Session] | None:
        code, output, error = await run_command("loginctl", "list-sessions", "--no-legend", "--no-pager")
        if code != 0:
            log.warning("loginctl list-sessions failed: %s", error.strip()[:200])
            return None
        ids = [line.split()[0] for line in output.splitlines() if line.split()]
        ids = [session_id for session_id in ids if re.match(r"^[A-Za-z0-9_-]{1,32}$", session_id)][:500]
        if not ids:
            return []
        code, output, error = await run_command("loginctl", "show-session", *ids, f"--property={LOGINCTL_PROPERTIES}",
                                                "--no-pager")
        if code != 0:
            log.warning("loginctl show-session failed: %s", error.strip()[:200])
            return None
        return parse_loginctl_show(output)

    async def logoff(self, session_id: int) -> Outcome:
        session = await self._find(session_id)
        if isinstance(session, Outcome):
            return session
        code, _, error = await run_command("loginctl", "terminate-session", session.handle)
        if code != 0:
            return Outcome("failed", f"loginctl terminate-session {session.handle}: {error.strip()[:300]}")
        return Outcome("ok", f"Logged off {session.username} (session {session_id}).")


def detect_provider() -> SessionProvider:
    """The best provider this host supports."""
    if platform.system() != "Linux":
        return UnsupportedSessions(f"User sessions on {platform.system() or 'this OS'} are not supported by this "
                                   "agent yet.")
    if Path("/run/systemd/system").is_dir() and shutil.which("loginctl"):
        return LoginctlSessions()
    if shutil.which("who"):
        return UtmpSessions()
    return UnsupportedSessions("Neither loginctl (systemd) nor who (utmp) is available to see user sessions.")
