"""What the benchmark client does over a stream (bench/clients.py) to the target (bench/target.py).

Each function opens nothing: it takes a fresh stream, tells the target what to do in the first line
(which travels through the relay like any other byte) and measures from the client's side.
"""
from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass, field

from bench.target import END_MARK, STAMP, pattern

PING_SIZE = 64


class WorkloadError(Exception):
    """The stream ended or misbehaved before the workload finished."""


async def host_to_client(stream, total: int, write_size: int, rate: float | None = None) -> float:
    """The target sends ``total`` bytes in ``write_size`` writes; seconds until the client has them all.
    With ``rate`` (bytes/s) the client reads no faster than that, as a slow reader does."""
    started = time.perf_counter()
    await stream.write(f"SOURCE {total} {write_size}\n".encode("ascii"))
    received = 0
    while received < total:
        data = await stream.read()
        if not data:
            raise WorkloadError(f"the stream ended after {received} of {total} bytes")
        received += len(data)
        if rate is not None:
            ahead = received / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    return time.perf_counter() - started


async def client_to_host(stream, total: int, write_size: int, done: bytes = b"DONE\n") -> float:
    """The client sends ``total`` bytes in ``write_size`` writes; seconds until the target confirms them
    with ``done``."""
    chunk = pattern(write_size)
    started = time.perf_counter()
    await stream.write(f"SINK {total}\n".encode("ascii"))
    full, rest = divmod(total, write_size)
    for _ in range(full):
        await stream.write(chunk)
    if rest:
        await stream.write(chunk[:rest])
    answer = b""
    while len(answer) < len(done):
        data = await stream.read()
        if not data:
            raise WorkloadError("the stream ended before the target confirmed the bytes")
        answer += data
    if answer != done:
        raise WorkloadError(f"unexpected answer {answer[:40]!r}")
    return time.perf_counter() - started


async def ping_pong(stream, count: int, size: int = PING_SIZE, *, started: bool = False) -> list[float]:
    """``count`` round trips of ``size`` bytes through an echoing target; seconds each."""
    if not started:
        await stream.write(b"ECHO\n")
    payload = pattern(size)
    clock = time.perf_counter
    times = []
    for _ in range(count):
        sent = clock()
        await stream.write(payload)
        received = 0
        while received < size:
            data = await stream.read()
            if not data:
                raise WorkloadError("the stream ended during a round trip")
            received += len(data)
        times.append(clock() - sent)
    return times


@dataclass
class StreamReport:
    """What one paced stream delivered: per-chunk one-way latencies (s) and whether it all arrived."""

    latencies: list[float] = field(default_factory=list)
    chunks_expected: int = 0
    complete: bool = False
    error: str = ""


async def paced_stream(stream, rate: int, chunk: int, seconds: float, report: StreamReport,
                       deadline: float) -> None:
    """Ask the target for ``rate`` bytes/s in ``chunk``-byte writes for ``seconds``; record how long each
    chunk took from the target's write to its last byte arriving here (clocks are the same machine's
    CLOCK_MONOTONIC). Runs until the end marker arrives or ``deadline`` (loop time) passes."""
    ticks = int(seconds / (chunk / rate))
    report.chunks_expected = ticks
    total = ticks * chunk + len(END_MARK)
    stamp_size = STAMP.size
    unpack = STAMP.unpack_from
    now_ns = time.monotonic_ns
    loop = asyncio.get_running_loop()
    position = 0  # bytes received so far
    head = bytearray()  # the current chunk's first bytes (its send time), gathered across reads
    try:
        await stream.write(f"STREAM {rate} {chunk} {seconds}\n".encode("ascii"))
        while position < total:
            remaining = deadline - loop.time()
            if remaining <= 0:
                report.error = f"only {position} of {total} bytes by the deadline"
                return
            async with asyncio.timeout(remaining):
                data = await stream.read()
            if not data:
                report.error = f"the stream ended after {position} of {total} bytes"
                return
            arrived = now_ns()
            offset = 0
            length = len(data)
            while offset < length:
                in_chunk = position % chunk
                if in_chunk < stamp_size and position < ticks * chunk:
                    take = min(stamp_size - in_chunk, length - offset)
                    head += data[offset:offset + take]
                step = min(chunk - in_chunk, length - offset)
                offset += step
                position += step
                if position % chunk == 0 and position <= ticks * chunk:
                    (sent_ns,) = unpack(head)
                    report.latencies.append((arrived - sent_ns) / 1e9)
                    head.clear()
        report.complete = True
    except TimeoutError:
        report.error = f"only {position} of {total} bytes by the deadline"
    except (ConnectionError, OSError, struct.error, asyncio.IncompleteReadError) as exc:
        report.error = f"{exc.__class__.__name__}: {exc}"
