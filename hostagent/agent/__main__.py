"""Command line: ``python -m hostagent.agent register …`` and ``python -m hostagent.agent run …``."""
from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path

from hostagent.agent import AGENT_VERSION
from hostagent.agent.channel import HostAgent, RunOptions
from hostagent.agent.rdpcert import RdpCertificateOptions
from hostagent.agent.registration import RegistrationFailed, register
from hostagent.agent.state import default_state_dir


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not host:port (e.g. 127.0.0.1:3389)")
    return host.strip("[]"), int(port)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def _group(value: str) -> int:
    """A group name or gid, resolved now so a typo fails at start, not at the first certificate."""
    if value.isdigit():
        return int(value)
    try:
        import grp  # noqa: PLC0415 - POSIX only
    except ImportError:
        raise argparse.ArgumentTypeError("groups exist on POSIX systems only") from None
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no group named {value!r}") from None


def _percent(value: str) -> float:
    number = _positive(value)
    if number >= 100:
        raise argparse.ArgumentTypeError("must be below 100")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hostagent.agent", description="WVD session host agent")
    parser.add_argument("--version", action="version", version=f"wvd-agent {AGENT_VERSION}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)

    reg = commands.add_parser("register", help="join a host pool with its registration token")
    reg.add_argument("--server", required=True, help="the control plane's URL, e.g. https://wvd.example.net")
    reg.add_argument("--token", required=True, help="the host pool's registration token")
    reg.add_argument("--name", default=socket.gethostname(), help="this host's name (default: the host name)")
    reg.add_argument("--state-dir", type=Path, default=default_state_dir())
    trust = reg.add_mutually_exclusive_group()
    trust.add_argument("--ca-file", type=Path, help="CA bundle to trust for an https:// server (default: system)")
    trust.add_argument("--ca-fingerprint", metavar="SHA256",
                       help="trust the server's /ca.pem only if its SHA-256 fingerprint is this one "
                            "(`serve` prints it; AB:CD:... or plain hex)")

    run = commands.add_parser("run", help="keep the host channel open")
    run.add_argument("--state-dir", type=Path, default=default_state_dir())
    run.add_argument("--rdp-target", type=_host_port, default=("127.0.0.1", 3389),
                     help="the local RDP listener to check and connect to (default 127.0.0.1:3389)")
    run.add_argument("--heartbeat-interval", type=_positive, help="seconds (default: what the server asks for)")
    run.add_argument("--disk-path", type=Path, default=Path("/"), help="the disk whose free space is checked")
    run.add_argument("--disk-min-free-percent", type=_percent, default=10.0,
                     help="warn (Needs assistance) below this much free space (default 10)")
    run.add_argument("--ca-file", type=Path, help="CA to trust for wss:// (default: the one stored at registration)")
    run.add_argument("--rdp-cert", type=Path, help="keep the RDP server's certificate (PEM chain) from the "
                     "control plane's CA in this file; the RDP server's configuration points at it")
    run.add_argument("--rdp-key", type=Path, help="the RDP certificate's private key file (written mode 0600)")
    run.add_argument("--rdp-key-group", type=_group, metavar="GROUP",
                     help="write the key 0640 for this group (the RDP server's, e.g. xrdp) instead of 0600")
    run.add_argument("--rdp-reload", metavar="CMD",
                     help="shell command run after each new RDP certificate is installed (e.g. to reload the server)")
    run.add_argument("--backoff-max", type=_positive, default=60.0, help="longest wait between reconnects (s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s wvd-agent: %(message)s",
                        stream=sys.stderr)
    log = logging.getLogger("wvd-agent")
    if args.command == "register":
        try:
            state = register(args.server, args.token, args.name, args.state_dir, ca_file=args.ca_file,
                             ca_fingerprint=args.ca_fingerprint)
        except RegistrationFailed as exc:
            log.error("registration failed: %s", exc)
            return exc.exit_code
        log.info("registered as %s (host %s) in pool %s; credentials in %s", state.name, state.session_host_id,
                 state.host_pool, state.directory)
        return 0
    if (args.rdp_cert is None) != (args.rdp_key is None) or (
            (args.rdp_reload or args.rdp_key_group is not None) and args.rdp_cert is None):
        log.error("--rdp-cert and --rdp-key go together (and --rdp-reload and --rdp-key-group need them)")
        return 2
    rdp_certificate = (RdpCertificateOptions(args.rdp_cert, args.rdp_key, args.rdp_reload, args.rdp_key_group)
                       if args.rdp_cert is not None else None)
    options = RunOptions(rdp_target=args.rdp_target, heartbeat_interval=args.heartbeat_interval,
                         disk_path=args.disk_path, disk_min_free_percent=args.disk_min_free_percent,
                         ca_file=args.ca_file, backoff_max=args.backoff_max,
                         rdp_certificate=rdp_certificate)
    return asyncio.run(HostAgent(args.state_dir, options).run())


if __name__ == "__main__":
    sys.exit(main())
