"""A real RDP test bed: xrdp (Xvnc sessions) as the session host, FreeRDP 2.11's ``xfreerdp`` or FreeRDP
3.10's ``xfreerdp3`` as the client.

Recipe and facts: PROTOCOLS.md §6 and §7. In short: xrdp and sesman run from a private copy of /etc/xrdp,
the session's "window manager" is a script that sleeps N seconds, so a successful login ends with the
server logging the user off and the client exiting with code 12 (ERRINFO_LOGOFF_BY_USER).

Certificates are checked on both hops, as a user's client would: ``run_xfreerdp(..., ca_file=...)``
installs a CA into the fresh HOME's FreeRDP certificate store and always passes ``/cert:deny``, so a
certificate that does not verify ends the connection instead of prompting. xrdp presents the certificate
at ``XrdpServer.rdp_cert_path`` (a throwaway self-signed one until a test or an agent installs another).

Needs root (useradd, chpasswd, /run/xrdp) and the packages in ``INSTALL_HINT``.
"""
from __future__ import annotations

import fcntl
import os
import pwd
import re
import secrets
import select
import shutil
import subprocess
import shlex
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed.lifecycle import descendants, pids_of_user, read_log, start_logged, stop_group, stop_pids
from testbed.ports import free_port, is_listening, listener_processes

REQUIRED_TOOLS = ("xrdp", "xrdp-sesman", "Xvnc", "xfreerdp", "Xvfb", "openssl")
INSTALL_HINT = (
    "apt-get install -y --no-install-recommends xrdp tigervnc-standalone-server freerdp2-x11 xvfb openssl"
)
# The two FreeRDP generations the suite runs: Debian bookworm's 2.11 and bookworm-backports' 3.10.
FREERDP2 = "xfreerdp"
FREERDP3 = "xfreerdp3"
FREERDP3_INSTALL_HINT = "apt-get install -y --no-install-recommends -t bookworm-backports freerdp3-x11"
XRDP_CONFIG_DIR = Path("/etc/xrdp")
SOCKSETUP = Path("/usr/share/xrdp/socksetup")
# xrdp reads sesman's address from /etc/xrdp/sesman.ini whatever -c says (PROTOCOLS.md §6), so our
# sesman must listen where that file says: the default 127.0.0.1:3350.
SESMAN_PORT = 3350
TEST_USER = "wvde2e"
# One xrdp test bed per machine at a time (sesman's port is fixed): test runs of different people
# queue on this lock instead of failing.
LOCK_PATH = Path(tempfile.gettempdir()) / "wvd-e2e-xrdp.lock"

# xfreerdp exit codes the tests look for (client/X11/xf_client.h, the same in 2.11 and 3.10).
EXIT_LOGOFF_BY_USER = 12  # the session ended on the server: login worked
EXIT_TIMEOUT = 124  # `timeout` interrupted the client (e.g. left in xrdp's login-failed dialog)

XRDP_LOGIN_OK = "login successful for user"
XRDP_CONNECTED_OK = "connected ok"
XRDP_LOGIN_FAILED = "login failed for user"


class TestBedError(RuntimeError):
    """The test bed cannot run here; the message says why and what to do."""

    __test__ = False  # not a test class, despite the name


def tools_available(tools: tuple[str, ...] = REQUIRED_TOOLS, *, need_root: bool = True) -> tuple[bool, str]:
    """Whether this machine can run the xrdp test bed (or just ``tools``); the reason when not."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return False, f"missing {', '.join(missing)}; install them with: {INSTALL_HINT}"
    if need_root and os.geteuid() != 0:
        return False, "the xrdp test bed must run as root (it creates a test user and /run/xrdp)"
    if "xrdp" in tools and not SOCKSETUP.exists():
        return False, f"{SOCKSETUP} is missing; reinstall xrdp: {INSTALL_HINT}"
    return True, ""


def set_ini_value(text: str, section: str, key: str, value: str) -> str:
    """Set ``key=value`` inside ``[section]`` of an xrdp ini text, keeping everything else as is.

    A plain line edit: configparser would drop comments and the repeated ``param=`` keys sesman uses.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{section}]"), None)
    if start is None:
        raise ValueError(f"section [{section}] not found")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=", re.IGNORECASE)
    for i in range(start + 1, end):
        if pattern.match(lines[i]):
            lines[i] = f"{key}={value}"
            break
    else:
        lines.insert(start + 1, f"{key}={value}")
    return "\n".join(lines) + "\n"


def remove_ini_section(text: str, section: str) -> str:
    """``text`` without ``[section]`` and its lines (unchanged when there is no such section)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{section}]"), None)
    if start is None:
        return text
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    return "\n".join(lines[:start] + lines[end:]) + "\n"


def refuse_if_port_taken(port: int, wanted_by: str) -> None:
    """Raise ``TestBedError`` naming the process(es) already listening on ``port``.

    The bed needs sesman on its fixed port: sharing another sesman would run that one's sessions.
    """
    if not is_listening(port):
        return
    holders = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in listener_processes(port)) or "a process we cannot see"
    raise TestBedError(
        f"{wanted_by} needs port {port}, which is already in use ({holders}). xrdp always talks to the "
        f"sesman named in /etc/xrdp/sesman.ini (127.0.0.1:{SESMAN_PORT}), so this test bed cannot run beside "
        "another one: stop that process (kill <pid>) and run the tests again."
    )


def ensure_test_user(name: str = TEST_USER) -> tuple[str, str]:
    """Create the local test user once and give it a fresh random password; return ``(user, password)``."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True)
    password = secrets.token_urlsafe(18)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
    return name, password


def write_private(path: Path, data: bytes) -> None:
    """Write a key file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def self_signed_certificate(common_name: str, dns_names: tuple[str, ...] = (), *, ca: bool = False,
                            days: int = 2) -> tuple[bytes, bytes]:
    """A throwaway self-signed certificate and its key, as PEM: xrdp's stand-in before a real one is
    installed, or (``ca=True``) a CA that is not ours, for the tests where a client must refuse."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                                        critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM), pem_key(key)


def issue_certificate(ca_cert_pem: bytes, ca_key_pem: bytes, common_name: str,
                      dns_names: tuple[str, ...] = (), *, days: int = 2) -> tuple[bytes, bytes]:
    """A server certificate for ``common_name`` (and ``dns_names``) signed by the given CA, with its key."""
    issuer = x509.load_pem_x509_certificate(ca_cert_pem)
    issuer_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in (common_name, *dns_names)]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), pem_key(key)


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class XrdpServer:
    """xrdp + xrdp-sesman on a private config dir and a free loopback port, for one test session.

    Use as a context manager. ``session_seconds`` is how long each RDP session lives before the server
    logs the user off (the exit-12 success signal).

    The RDP certificate xrdp presents is the PEM at ``rdp_cert_path`` with its key at ``rdp_key_path``
    (``certificate=``/``key_file=`` in the private xrdp.ini). At start the bed writes a throwaway
    self-signed pair there; whoever installs another pair (``install_rdp_certificate``, or an agent run
    with ``--rdp-cert``/``--rdp-key`` pointed at these paths) needs no restart: xrdp reads both files
    for every new connection.
    """

    def __init__(self, session_seconds: float = 1.0, *, lock_timeout: float = 180.0, start_timeout: float = 15.0):
        self.session_seconds = session_seconds
        self.lock_timeout = lock_timeout
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.user = ""
        self.password = ""
        self.config_dir: Path | None = None
        self._lock_file = None
        self._sesman: subprocess.Popen | None = None
        self._xrdp: subprocess.Popen | None = None

    # --- what tests read -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def rdp_cert_path(self) -> Path:
        return self._dir / "rdp-cert.pem"

    @property
    def rdp_key_path(self) -> Path:
        return self._dir / "rdp-key.pem"

    def install_rdp_certificate(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Make xrdp present ``cert_pem`` (a PEM chain, leaf first) from its next connection on."""
        write_private(self.rdp_key_path, key_pem)
        self.rdp_cert_path.write_bytes(cert_pem)

    @property
    def xrdp_log_path(self) -> Path:
        return self._dir / "xrdp.log"

    @property
    def sesman_log_path(self) -> Path:
        return self._dir / "xrdp-sesman.log"

    def log_text(self) -> str:
        """xrdp's log so far (where ``login successful for user`` and ``connected ok`` appear)."""
        return read_log(self.xrdp_log_path)

    def sesman_log_text(self) -> str:
        return read_log(self.sesman_log_path)

    def failure_report(self) -> str:
        """Both logs and the daemons' own output, for a failed test's report."""
        if self.config_dir is None:
            return "(the xrdp test bed is not running)"
        parts = []
        for name in ("xrdp.log", "xrdp-sesman.log", "xrdp.out", "xrdp-sesman.out"):
            parts.append(f"--- {name}\n{read_log(self._dir / name, 20_000)}")
        return "\n".join(parts)

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> XrdpServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        ok, reason = tools_available()
        if not ok:
            raise TestBedError(reason)
        self._acquire_lock()
        try:
            refuse_if_port_taken(SESMAN_PORT, "xrdp-sesman")
            self.user, self.password = ensure_test_user()
            self._kill_test_user_processes()  # a session left over by a crashed earlier run
            self.config_dir = Path(tempfile.mkdtemp(prefix="wvd-xrdp-"))
            # sesman runs the window-manager script as the test user: it must reach it.
            self.config_dir.chmod(0o755)
            self.port = free_port(self.host)
            self._write_config()
            subprocess.run(["sh", str(SOCKSETUP)], check=True, capture_output=True)
            self._sesman = start_logged(
                ["xrdp-sesman", "--nodaemon", "-c", str(self._dir / "sesman.ini")], self._dir / "xrdp-sesman.out"
            )
            self._wait_listening(SESMAN_PORT, self._sesman, "xrdp-sesman")
            self._xrdp = start_logged(["xrdp", "--nodaemon", "-c", str(self._dir / "xrdp.ini")], self._dir / "xrdp.out")
            self._wait_listening(self.port, self._xrdp, "xrdp")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop xrdp, sesman and every session process they left, remove the config dir, free the lock."""
        try:
            leftovers: set[int] = set()
            for process in (self._xrdp, self._sesman):
                if process is not None:
                    leftovers |= descendants(process.pid)  # sessions call setsid(): not in the group
            for process in (self._xrdp, self._sesman):
                if process is not None:
                    stop_group(process, grace=5)
            stop_pids(leftovers, grace=5)
            if self.user:
                self._kill_test_user_processes()
            if self.config_dir is not None:
                shutil.rmtree(self.config_dir, ignore_errors=True)
        finally:
            self._xrdp = self._sesman = None
            self.config_dir = None
            self._release_lock()

    # --- internals -------------------------------------------------------------------------------
    @property
    def _dir(self) -> Path:
        if self.config_dir is None:
            raise TestBedError("the xrdp test bed is not started")
        return self.config_dir

    def _acquire_lock(self) -> None:
        self._lock_file = open(LOCK_PATH, "a+")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._release_lock()
                    raise TestBedError(
                        f"another xrdp test bed held {LOCK_PATH} for {self.lock_timeout:.0f} s "
                        "(only one can run per machine: sesman's port 3350 is fixed); try again later"
                    ) from None
                time.sleep(0.5)

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the flock
            self._lock_file = None

    def _write_config(self) -> None:
        shutil.copytree(XRDP_CONFIG_DIR, self._dir, dirs_exist_ok=True)
        self._write_session_script(["sleep", f"{self.session_seconds:g}"])

        self.install_rdp_certificate(*self_signed_certificate("xrdp test bed (self-signed)"))
        xrdp_ini = (self._dir / "xrdp.ini").read_text()
        for key, value in {
            "port": f"tcp://{self.host}:{self.port}",
            "autorun": "Xvnc",
            "fork": "true",
            "certificate": str(self.rdp_cert_path),
            "key_file": str(self.rdp_key_path),
        }.items():
            xrdp_ini = set_ini_value(xrdp_ini, "Globals", key, value)
        # A client without auto-logon (the browser's) logs in through xrdp's dialog, which defaults to the
        # first session type: offer only the bed's Xvnc (the Xorg backend is not installed).
        xrdp_ini = remove_ini_section(xrdp_ini, "Xorg")
        xrdp_ini = set_ini_value(xrdp_ini, "Logging", "LogFile", str(self.xrdp_log_path))
        xrdp_ini = set_ini_value(xrdp_ini, "Logging", "EnableSyslog", "false")
        (self._dir / "xrdp.ini").write_text(xrdp_ini)

        sesman_ini = (self._dir / "sesman.ini").read_text()
        for key, value in {
            "ListenAddress": "127.0.0.1",
            "ListenPort": str(SESMAN_PORT),
            "EnableUserWindowManager": "false",
            "DefaultWindowManager": str(self._session_script),
        }.items():
            sesman_ini = set_ini_value(sesman_ini, "Globals", key, value)
        sesman_ini = set_ini_value(sesman_ini, "Logging", "LogFile", str(self.sesman_log_path))
        sesman_ini = set_ini_value(sesman_ini, "Logging", "EnableSyslog", "false")
        sesman_ini = set_ini_value(sesman_ini, "ChansrvLogging", "EnableSyslog", "false")
        (self._dir / "sesman.ini").write_text(sesman_ini)

    @property
    def _session_script(self) -> Path:
        return self._dir / "session.sh"

    def _write_session_script(self, command: list[str]) -> None:
        # The whole desktop session: sesman runs this as the test user for every new session, and ends the
        # session (xrdp logs the client off) when it exits.
        self._session_script.write_text(f"#!/bin/sh\nexec {shlex.join(command)}\n")
        self._session_script.chmod(0o755)

    @contextmanager
    def session_program(self, command: list[str], files: dict[str, str] | None = None,
                        limit_seconds: float = 300) -> Iterator[None]:
        """Sessions started inside the ``with`` block run ``command`` (at most ``limit_seconds``) instead of
        the short sleep; ``files`` (name: text) are written beside it, readable by the test user, and
        ``{dir}`` in ``command`` is their directory. On both ends any running session is ended, so no
        session of one kind is reconnected to by a client expecting the other."""
        folder = self._dir / "program"
        folder.mkdir(mode=0o755, exist_ok=True)
        for name, text in (files or {}).items():
            (folder / name).write_text(text)
            (folder / name).chmod(0o644)
        self._kill_test_user_processes()
        self._write_session_script(["timeout", "-k", "5", f"{limit_seconds:g}",
                                    *(part.replace("{dir}", str(folder)) for part in command)])
        try:
            yield
        finally:
            self._write_session_script(["sleep", f"{self.session_seconds:g}"])
            self._kill_test_user_processes()

    def _wait_listening(self, port: int, process: subprocess.Popen, name: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not is_listening(port):
            if process.poll() is not None:
                raise TestBedError(f"{name} exited with code {process.returncode} at start\n{self.failure_report()}")
            if time.monotonic() >= deadline:
                raise TestBedError(f"{name} did not listen on port {port} within {self.start_timeout:g} s\n"
                                   f"{self.failure_report()}")
            time.sleep(0.05)

    def _kill_test_user_processes(self) -> None:
        # Xvnc, xrdp-chansrv and the session script run as the test user, which only this bed uses
        # (and the lock makes this bed the only one running).
        stop_pids(pids_of_user(pwd.getpwnam(self.user).pw_uid), grace=5)


class Xvfb:
    """A virtual X display for xfreerdp (it needs one even for /auth-only), on a free display number.

    While running, ``DISPLAY`` in this process's environment points at it, so ``run_xfreerdp(args)``
    needs no display argument; the previous value is restored on stop.
    """

    def __init__(self, *, geometry: str = "1024x768x24", start_timeout: float = 15.0):
        self.geometry = geometry
        self.start_timeout = start_timeout
        self.display = ""
        self._dir: Path | None = None
        self._process: subprocess.Popen | None = None
        self._previous_display: str | None = None

    def __enter__(self) -> Xvfb:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if shutil.which("Xvfb") is None:
            raise TestBedError(f"Xvfb is missing; install it with: {INSTALL_HINT}")
        self._dir = Path(tempfile.mkdtemp(prefix="wvd-xvfb-"))
        read_end, write_end = os.pipe()
        try:
            # -displayfd: the server picks a free display itself and writes its number to the pipe,
            # so parallel runs never race for the same :N.
            with open(self._dir / "xvfb.log", "ab") as log:
                self._process = subprocess.Popen(
                    ["Xvfb", "-displayfd", str(write_end), "-screen", "0", self.geometry, "-nolisten", "tcp"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=(write_end,), start_new_session=True,
                )
            os.close(write_end)
            write_end = -1
            number = self._read_display_number(read_end)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        self.display = f":{number}"
        self._previous_display = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = self.display

    def stop(self) -> None:
        if self.display and os.environ.get("DISPLAY") == self.display:
            if self._previous_display is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = self._previous_display
        if self._process is not None:
            stop_group(self._process, grace=5)
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _read_display_number(self, fd: int) -> int:
        deadline = time.monotonic() + self.start_timeout
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._process.poll() is not None:
                log = read_log(self._dir / "xvfb.log", 5000)
                raise TestBedError(f"Xvfb did not report a display within {self.start_timeout:g} s\n{log}")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(fd, 64)
                if not chunk:
                    continue  # EOF before a number: the poll() above reports the exit
                data += chunk
        return int(data.strip())


def freerdp_certificate_store(home: Path) -> Path:
    """Where FreeRDP 2.11 and 3.10 both look for trusted CAs of a user (``<ConfigPath>/certs``, an OpenSSL
    hashed directory; libfreerdp/crypto/certificate.c in 2.11, certificate_store.c in 3.10)."""
    return home / ".config" / "freerdp" / "certs"


def subject_hash(ca_file: Path) -> str:
    """OpenSSL's subject hash of a certificate: the file name a hashed CA directory needs (``<hash>.0``)."""
    completed = subprocess.run(["openssl", "x509", "-subject_hash", "-noout", "-in", str(ca_file)],
                               capture_output=True, text=True)
    if completed.returncode != 0:
        raise TestBedError(f"openssl cannot read {ca_file} as a PEM certificate: {completed.stderr.strip()}")
    return completed.stdout.strip()


def trust_ca(home: Path, ca_file: Path) -> Path:
    """Trust ``ca_file`` the way a user does: copy it into FreeRDP's certificate store under ``home``."""
    store = freerdp_certificate_store(home)
    store.mkdir(parents=True, exist_ok=True)
    target = store / f"{subject_hash(ca_file)}.0"
    shutil.copyfile(ca_file, target)
    return target


def with_cert_deny(args: list[str]) -> list[str]:
    """``args`` with ``deny`` added to their ``/cert:`` option, or ``/cert:deny`` appended: FreeRDP keeps
    only the last ``/cert:`` it is given, so the values must share one option (``/cert:name:x,deny``)."""
    values = [arg.removeprefix("/cert:") for arg in args if arg.startswith("/cert:")]
    return [arg for arg in args if not arg.startswith("/cert:")] + ["/cert:" + ",".join([*values, "deny"])]


def run_xfreerdp(
    args: list[str],
    timeout: float = 20,
    *,
    client: str = FREERDP2,
    ca_file: Path | None = None,
    display: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run ``timeout -s INT <timeout> <client> ARGS`` with ``/cert:deny``; return (exit code, stdout+stderr).

    ``client`` is ``xfreerdp`` (FreeRDP 2.11) or ``xfreerdp3`` (3.10). HOME is a fresh empty directory per
    call, so no trusted-certificate or known-hosts state leaks between runs; ``ca_file`` is installed into
    that HOME's certificate store (``trust_ca``). ``/cert:deny`` makes a certificate that does not verify
    end the connection instead of asking (both generations have it). ``display`` defaults to ``$DISPLAY``
    (set by a running ``Xvfb``, e.g. the tests' ``xvfb`` fixture).
    Exit 12 = the server logged the user off (success with the 1-s session); 124 = timed out.
    """
    if shutil.which(client) is None:
        hint = FREERDP3_INSTALL_HINT if client == FREERDP3 else INSTALL_HINT
        raise TestBedError(f"{client} is missing; install it with: {hint}")
    display = display or os.environ.get("DISPLAY")
    if not display:
        raise TestBedError(f"{client} needs an X display: use the xvfb fixture or pass display=")
    with tempfile.TemporaryDirectory(prefix="wvd-freerdp-home-") as home:
        if ca_file is not None:
            trust_ca(Path(home), ca_file)
        env = {**os.environ, "DISPLAY": display, "HOME": home}
        env.pop("XDG_CONFIG_HOME", None)  # FreeRDP would keep its state there instead of HOME
        env.pop("SSL_CERT_FILE", None)  # trust only what the store holds (and the system's CAs)
        env.update(extra_env or {})
        command = ["timeout", "-s", "INT", "-k", "5", f"{timeout:g}", client, *with_cert_deny(args)]
        try:
            completed = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=env, timeout=timeout + 30,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace")
            raise TestBedError(f"{client} outlived `timeout` by 30 s\n{output}") from None
    return completed.returncode, completed.stdout.decode(errors="replace")
