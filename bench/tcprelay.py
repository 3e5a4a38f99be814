"""The baseline contender: a plain asyncio TCP relay (streams, 64 KiB reads, drain on every write).

``python bench/tcprelay.py --port P --target HOST:PORT`` relays every connection on 127.0.0.1:P to the
target, both ways, until either side closes. No framing, no TLS, no flow control beyond TCP's own: the
upper bound a Python relay on this machine can reach, which the gateway's throughput is a ratio of.
``--cert/--key`` make it accept TLS and ``--target-ca PEM`` dial the target over verified TLS (bench/tlsrelay.py
measures what each costs).
"""
from __future__ import annotations

import argparse
import asyncio
import ssl

READ_SIZE = 1 << 16


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int, target_host: str, target_port: int, listen_tls: ssl.SSLContext | None = None,
               target_tls: ssl.SSLContext | None = None) -> None:
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(target_host, target_port, ssl=target_tls,
                                                                         limit=READ_SIZE)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, target_writer), pipe(target_reader, client_writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port, backlog=1024, ssl=listen_tls, limit=READ_SIZE)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--cert", help="accept TLS with this certificate (PEM) ...")
    parser.add_argument("--key", help="... and this key")
    parser.add_argument("--target-ca", help="dial the target over TLS, trusting this CA (PEM) only")
    options = parser.parse_args()
    host, _, target_port = options.target.rpartition(":")
    listen = None
    if options.cert:
        listen = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        listen.load_cert_chain(options.cert, options.key)
    dial = None
    if options.target_ca:  # verified, as a real relay would: the handshake is part of the relay's cost
        dial = ssl.create_default_context(cafile=options.target_ca)
    try:
        asyncio.run(main(options.port, host, int(target_port), listen, dial))
    except KeyboardInterrupt:
        pass
