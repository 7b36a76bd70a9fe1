"""A minimal TCP forwarder: the only way out of the offline variant's internal network.

docker-compose.offline.yaml puts dev-agent on an `internal: true` network (no route anywhere, not even to
the host). This forwarder runs on that network *and* the default one, and relays one fixed target: LM
Studio on the host. So the model stays reachable while commands the agent runs have no network at all.
Standard library only: it runs from the dev-agent image itself, no third-party image to trust.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys


def host_port(value: str) -> tuple[str, int]:
    # Port 0 lets the OS pick one (the tests listen that way).
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        # Half-close so the other side sees end-of-stream (HTTP keep-alive and streaming replies need it).
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _handle(target: tuple[str, int], client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        upstream_r, upstream_w = await asyncio.open_connection(*target)
    except OSError as exc:
        print(f"tcp-forward: cannot reach {target[0]}:{target[1]}: {exc}", file=sys.stderr, flush=True)
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
    finally:
        for w in (upstream_w, client_w):
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(target, r, w), *listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
    print(f"tcp-forward: {bound} -> {target[0]}:{target[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tcp-forward", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=host_port, required=True, metavar="HOST:PORT")
    parser.add_argument("--target", type=host_port, required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
