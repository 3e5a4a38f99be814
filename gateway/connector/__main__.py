"""``python -m gateway.connector FILE.rdp [--listen HOST:PORT] [--launch [--client PROGRAM]] [--ca-file PEM]
[-- CLIENT ARGS...]``

Exit codes: 2 for input that cannot work (no gateway or ticket in the file, an expired ticket, bad
options, a client program that is not installed); 1 when the local port cannot be bound; with
``--launch``, the RDP client's own exit code; otherwise 0 once stopped (Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import shutil
import signal
import ssl
import sys
from pathlib import Path

from gateway.connector.rdpfile import ConnectionFile, ConnectionFileError, read_connection_file
from gateway.connector.tunnel import Connector

log = logging.getLogger("wvd-connector")

EXIT_BAD_INPUT = 2
EXIT_CANNOT_LISTEN = 1


class UsageError(Exception):
    """Input the connector cannot work with; the message says why (exit code 2)."""


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``; port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:3390")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Trust ``ca_file`` only, or the system's store; the gateway's certificate is always checked."""
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ca-file {ca_file}: not a readable PEM certificate ({exc})") from None


def default_client(platform: str = sys.platform) -> str:
    """The RDP client --launch starts: mstsc on Windows, xfreerdp elsewhere."""
    return "mstsc" if platform == "win32" else "xfreerdp"


def client_command(program: str, host: str, port: int, args: list[str]) -> list[str]:
    """The client pointed at the local port (``/v:`` is understood by both mstsc and xfreerdp)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # "any" is not dialable
    host = f"[{host}]" if ":" in host else host
    return [program, f"/v:{host}:{port}", *args]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.connector",
        usage="%(prog)s FILE.rdp [--listen HOST:PORT] [--launch [--client PROGRAM]] [--ca-file PEM]"
              " [-- CLIENT ARGS...]",
        description="Connect an RDP client that has no RD Gateway support through the gateway named in a "
                    ".rdp file of the feed: listens on a local port and tunnels every connection to it "
                    "over the gateway's WebSocket transport, with the file's ticket.",
        epilog="The gateway's certificate is checked against the system's trust store, or only against "
               "--ca-file (the control plane's CA, served by the portal at /ca.pem; the .rdp file does not "
               "name the portal, so the connector cannot fetch it itself). Arguments after -- go to the "
               "client that --launch starts, after its /v:.",
    )
    parser.add_argument("file", type=Path, help="a .rdp file downloaded from the feed")
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="local address to listen on (default 127.0.0.1 and a free port)")
    parser.add_argument("--launch", action="store_true",
                        help="start the RDP client pointed at the local port and exit when it exits, with its "
                             "exit code")
    parser.add_argument("--client", metavar="PROGRAM",
                        help="the client --launch starts (default: mstsc on Windows, xfreerdp elsewhere)")
    parser.add_argument("--ca-file", type=Path, metavar="PEM", help="trust only this CA for the gateway")
    return parser


async def serve(file: ConnectionFile, context: ssl.SSLContext, listen: tuple[str, int],
                launch: list[str] | None) -> int:
    """Listen and tunnel until stopped, or until the launched client exits; the exit code."""
    connector = Connector(file, context)
    try:
        host, port = await connector.start(*listen)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", listen[0], listen[1], exc.strerror or exc)
        return EXIT_CANNOT_LISTEN
    target = f"{file.full_address} " if file.full_address else ""
    print(f"wvd-connector: listening on {host}:{port}; point your RDP client at it to reach {target}"
          f"through {file.gateway_host}:{file.gateway_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt instead
            pass
    try:
        if launch is None:
            await stop.wait()
            return 0
        return await run_client(client_command(launch[0], host, port, launch[1:]), stop)
    finally:
        await connector.close()


async def run_client(command: list[str], stop: asyncio.Event) -> int:
    """Run the RDP client until it exits (or we are stopped); its exit code."""
    log.info("starting %s", " ".join(command[:2]))
    process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL)
    waiter = asyncio.ensure_future(process.wait())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not waiter.done():
        process.terminate()
    code = await waiter
    log.info("%s exited with %s", command[0], code)
    return code


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="wvd-connector: %(message)s", stream=sys.stderr)
    argv = list(sys.argv[1:] if argv is None else argv)
    client_args: list[str] = []
    if "--" in argv:  # everything after the first -- is the client's, options like -wallpaper included
        split = argv.index("--")
        argv, client_args = argv[:split], argv[split + 1:]
    args = build_parser().parse_args(argv)
    try:
        if client_args and not args.launch:
            raise UsageError("client arguments are only used with --launch")
        if args.client and not args.launch:
            raise UsageError("--client is only used with --launch")
        listen = parse_listen(args.listen)
        file = read_connection_file(args.file)
        context = client_ssl_context(args.ca_file)
        launch = None
        if args.launch:
            program = args.client or default_client()
            if shutil.which(program) is None:
                raise UsageError(f"cannot launch {program}: it is not installed or not on PATH "
                                 "(use --client, or start your RDP client yourself)")
            launch = [program, *client_args]
    except (UsageError, ConnectionFileError) as exc:
        log.error("%s", exc)
        return EXIT_BAD_INPUT
    if not is_loopback(listen[0]):
        log.warning("listening on %s: anyone who can reach this address connects with your ticket", listen[0])
    if file.ticket_info is not None:
        info = file.ticket_info
        log.info("ticket for %s (%s), valid until %s UTC", info.username or "?", info.host_pool_name or info.resource or "?",
                 f"{info.expires_at:%Y-%m-%d %H:%M:%S}")
    try:
        return asyncio.run(serve(file, context, listen, launch))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
