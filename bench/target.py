"""The benchmarks' stand-in for an RDP listener: a TCP server whose behaviour each connection chooses.

Run as its own process (``python bench/target.py --port P``), so the bytes it sends and swallows cost the
benchmark client nothing. The agent's real bridge connects here as it would to 127.0.0.1:3389; the client
at the other end of the relay names what it wants in its first line, which travels through the relay:

- ``SOURCE <total> <write size>``: send ``total`` bytes in writes of ``write size`` (host → client).
- ``SINK <total>``: read ``total`` bytes, then answer ``DONE`` (client → host).
- ``ECHO``: send back every byte received (round trips).
- ``STREAM <bytes per second> <chunk> <seconds>``: send one ``chunk``-byte write every chunk/rate seconds
  for ``seconds``, each starting with the send time (``time.monotonic_ns``, 8 bytes little-endian), so the
  client can tell how long each chunk took through the relay; then ``END`` as its own 8-byte marker.

A connection that closes without a line is the agent's health probe: closed quietly. Loopback only.
"""
from __future__ import annotations

import argparse
import asyncio
import struct
import time

MAX_LINE = 100
MAX_TOTAL = 1 << 40
READ_SIZE = 1 << 18
STAMP = struct.Struct("<Q")
END_MARK = b"\xff" * 8  # a STREAM chunk never starts with this: monotonic_ns is far below 2**63


def pattern(size: int) -> bytes:
    """A fixed, non-repeating-looking payload of ``size`` bytes (no compression anywhere on the path)."""
    return bytes((i * 131 + (i >> 8)) & 0xFF for i in range(size))


def _number(text: str, low: int, high: int) -> int:
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}..{high}")
    return value


async def source(writer: asyncio.StreamWriter, total: int, size: int) -> None:
    chunk = pattern(size)
    full, rest = divmod(total, size)
    for _ in range(full):
        writer.write(chunk)
        await writer.drain()
    if rest:
        writer.write(chunk[:rest])
        await writer.drain()


async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, total: int) -> None:
    left = total
    while left > 0:
        data = await reader.read(min(READ_SIZE, left))
        if not data:
            return
        left -= len(data)
    writer.write(b"DONE\n")
    await writer.drain()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(READ_SIZE):
        writer.write(data)
        await writer.drain()


async def stream(writer: asyncio.StreamWriter, rate: int, size: int, seconds: float) -> None:
    """Paced writes on an absolute schedule (no drift); a late tick sends at once, never twice at once."""
    body = pattern(size)[STAMP.size:]
    interval = size / rate
    loop = asyncio.get_running_loop()
    start = loop.time()
    ticks = int(seconds / interval)
    for tick in range(ticks):
        delay = start + tick * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(STAMP.pack(time.monotonic_ns()) + body)
        await writer.drain()
    writer.write(END_MARK)
    await writer.drain()


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await reader.readuntil(b"\n")
        if len(line) > MAX_LINE:
            raise ValueError("command line too long")
        words = line.decode("ascii").split()
        command, args = words[0], words[1:]
        if command == "SOURCE":
            await source(writer, _number(args[0], 1, MAX_TOTAL), _number(args[1], 1, 1 << 24))
        elif command == "SINK":
            await sink(reader, writer, _number(args[0], 1, MAX_TOTAL))
        elif command == "ECHO":
            await echo(reader, writer)
        elif command == "STREAM":
            await stream(writer, _number(args[0], 1, 1 << 32), _number(args[1], 16, 1 << 24), float(args[2]))
        else:
            raise ValueError(f"unknown command {command[:20]!r}")
        # Stay open until the client closes: closing first would end the relay under the client.
        while await reader.read(READ_SIZE):
            pass
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # a health probe, or the client went away
    except (ValueError, IndexError, UnicodeDecodeError, asyncio.LimitOverrunError) as exc:
        print(f"target: bad command: {exc}", flush=True)
    finally:
        writer.close()


async def main(host: str, port: int) -> None:
    server = await asyncio.start_server(serve_one, host, port, limit=READ_SIZE, backlog=1024)
    print(f"target listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    try:
        asyncio.run(main(options.host, options.port))
    except KeyboardInterrupt:
        pass
