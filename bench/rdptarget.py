"""The browser benchmark's stand-in for an RDP listener that speaks TLS, as xrdp does on a session host.

    python bench/rdptarget.py --port P --cert CERT --key KEY

Each connection: the client's X.224 Connection Request, a Connection Confirm choosing PROTOCOL_SSL, a TLS
handshake with the certificate and key read from CERT and KEY *for this connection* (the files the host's
agent keeps with ``run --rdp-cert CERT --rdp-key KEY``; xrdp reads them per connection too, so a renewed
certificate is used at once), then, inside TLS, one command line from the client:

- ``SOURCE <pdus>``: send ``pdus`` TPKT-framed X.224 Data PDUs of 16 KiB (host → client), 64 KiB per write.
- ``BITMAP <repeats>``: xrdp's real PDUs (testbed/rdpbitmap_vectors.py): its Demand Active, then
  ``repeats`` times a padded Interleaved RLE rectangle (GREEN_BLOCK) and a padded button (BUTTON), which the
  browser path's rewriter (wire.rdpbitmap) must re-present.
- ``SINK <bytes>``: read that many bytes, then answer a TPKT PDU holding ``DONE`` (client → host).
- ``ECHO``: send back every byte received (round trips; the client sends TPKT PDUs).

Everything the host sends is RDP framing, as the browser path's rewriter requires. The agent's certificate
probe (an X.224 request, a TLS handshake, a close) is answered like any client. Loopback only.
"""
from __future__ import annotations

import argparse
import asyncio
import ssl
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.target import pattern  # noqa: E402
from testbed import rdpbitmap_vectors as xrdp  # noqa: E402
from wire import x224  # noqa: E402

READ_SIZE = 1 << 18
MAX_LINE = 100
PDU_SIZE = 16 * 1024  # near what xrdp sends per PDU
WRITE_SIZE = 64 * 1024
X224_DATA = b"\x02\xf0\x80"
# An X.224 Connection Confirm with an RDP Negotiation Response selecting PROTOCOL_SSL ([MS-RDPBCGR] 2.2.1.2).
CONFIRM_SSL = x224.tpkt(struct.pack(">BBHHB", 14, x224.CONNECTION_CONFIRM, 0, 0x1234, 0)
                        + struct.pack("<BBHI", x224.NEG_RESPONSE, 0, 8, x224.PROTOCOL_SSL))


def bulk_pdu() -> bytes:
    """One 16 KiB X.224 Data PDU that is no MCS Send Data Indication: the rewriter passes it as it is."""
    return x224.tpkt(X224_DATA + b"\x00" + pattern(PDU_SIZE - 8))


def done_pdu() -> bytes:
    return x224.tpkt(X224_DATA + b"\x00DONE")


def bitmap_stream() -> tuple[bytes, bytes]:
    """(what the host sends first, what it repeats ``repeats`` times) for ``BITMAP``."""
    return xrdp.DEMAND_ACTIVE, xrdp.GREEN_BLOCK + xrdp.BUTTON


def host_bytes(command: str, count: int) -> tuple[bytes, bytes, int]:
    """(head, unit, repeats): the host sends head + unit * repeats for SOURCE and BITMAP."""
    if command == "SOURCE":
        return b"", bulk_pdu(), count
    head, unit = bitmap_stream()
    return head, unit, count


async def send_repeated(writer: asyncio.StreamWriter, head: bytes, unit: bytes, repeats: int) -> None:
    per_write = max(1, WRITE_SIZE // len(unit))
    block = unit * per_write
    if head:
        writer.write(head)
    full, rest = divmod(repeats, per_write)
    for _ in range(full):
        writer.write(block)
        await writer.drain()
    if rest:
        writer.write(unit * rest)
    await writer.drain()


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cert: Path, key: Path) -> None:
    try:
        header = await reader.readexactly(x224.TPKT_HEADER)
        request = header + await reader.readexactly(x224.packet_length(header) - x224.TPKT_HEADER)
        x224.check_connection_request(request)
        try:
            context = server_context(cert, key)
        except (OSError, ssl.SSLError):
            writer.write(x224.disconnect_request())  # the agent has not written the certificate yet
            await writer.drain()
            return
        writer.write(CONFIRM_SSL)
        await writer.drain()
        await writer.start_tls(context)
        line = await reader.readuntil(b"\n")
        if len(line) > MAX_LINE:
            raise ValueError("command line too long")
        words = line.decode("ascii").split()
        command, args = words[0], words[1:]
        if command in ("SOURCE", "BITMAP"):
            await send_repeated(writer, *host_bytes(command, int(args[0])))
        elif command == "SINK":
            left = int(args[0])
            while left > 0:
                data = await reader.read(min(READ_SIZE, left))
                if not data:
                    return
                left -= len(data)
            writer.write(done_pdu())
            await writer.drain()
        elif command == "ECHO":
            while data := await reader.read(READ_SIZE):
                writer.write(data)
                await writer.drain()
        else:
            raise ValueError(f"unknown command {command[:20]!r}")
        while await reader.read(READ_SIZE):  # stay open until the client closes
            pass
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
        pass  # the agent's probe, or the client went away
    except (ValueError, IndexError, UnicodeDecodeError, asyncio.LimitOverrunError, x224.X224Error) as exc:
        print(f"rdptarget: bad request: {exc}", flush=True)
    finally:
        writer.close()


async def main(host: str, port: int, cert: Path, key: Path) -> None:
    server = await asyncio.start_server(lambda r, w: serve_one(r, w, cert, key), host, port, limit=READ_SIZE,
                                        backlog=1024)
    print(f"rdptarget listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    options = parser.parse_args()
    try:
        asyncio.run(main(options.host, options.port, options.cert, options.key))
    except KeyboardInterrupt:
        pass
