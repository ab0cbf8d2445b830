"""RPC over sessions (issue 12) beside grpc.aio with raw bytes and a raw asyncio
request/response protocol, in the same run.

    python -m bench.rpc            # 50,000 calls per run
    python -m bench.rpc --quick    # 10,000
    python -m bench.rpc --json

Each server runs alone in a child process (``python -m bench.rpc --serve KIND``); this
process is the client, on the standard asyncio loop.  Every call sends 64 octets and gets
them back (an echo):

* ``sessionlayer``: ``rpc_handler(registry)`` with a plain ``echo`` method (run inline),
  ``RpcClient.call("echo", payload)``; msgpack with bytes when installed (the ``msgpack``
  extra), and JSON with a 64-character string;
* ``grpc.aio``: a generic unary-unary handler without serializers (raw bytes in and out),
  over one insecure HTTP/2 channel (the ``bench`` extra installs grpcio);
* ``raw asyncio``: length-prefixed frames with an 8-octet call id over ``asyncio.Protocol``
  (what an RPC costs with no framework at all).

Measured: calls/s with 200 calls in flight (200 tasks, each calling in a loop, N calls in
all), p50/p99 latency of those calls, and p50/p99 of calls made one at a time (2,000;
500 with --quick).  Nearest-rank percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = b"\x5a" * 64
TEXT = "z" * 64
CONCURRENCY = 200
_FRAME = struct.Struct(">IQ")  # raw: length of what follows, call id


# ============================================================ servers (child processes)


async def _serve_sessionlayer() -> None:
    import sessionlayer
    from sessionlayer.apps.rpc import RPC_SUPPORTED, Registry, rpc_handler

    registry = Registry()
    registry.register("echo", lambda x: x)
    options = sessionlayer.Options(keepalive_interval=None, idle_timeout=None,
                                   tpdu_size=65408)  # fmt: skip
    server = await sessionlayer.serve(rpc_handler(registry), "127.0.0.1", 0,
                                      supported=RPC_SUPPORTED, options=options)  # fmt: skip
    print(server.port, flush=True)
    await asyncio.Event().wait()


async def _serve_grpc() -> None:
    import grpc

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


class _RawServer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        while len(buf) >= 4:
            (n,) = struct.unpack_from(">I", buf)
            if len(buf) < 4 + n:
                break
            out.append(bytes(buf[: 4 + n]))  # the same frame back: id and payload
            del buf[: 4 + n]
        if out:
            self.transport.write(b"".join(out))


async def _serve_raw() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_RawServer, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# ============================================================ clients


class _RawClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.buf = bytearray()
        self.next = 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 12:
            n, cid = _FRAME.unpack_from(buf)
            if len(buf) < 4 + n:
                break
            future = self.pending.pop(cid, None)
            if future is not None and not future.done():
                future.set_result(bytes(buf[12 : 4 + n]))
            del buf[: 4 + n]

    async def call(self, payload: bytes) -> bytes:
        cid = self.next
        self.next += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[cid] = future
        self.transport.write(_FRAME.pack(8 + len(payload), cid) + payload)
        return await future


async def _client(kind: str, port: int) -> tuple[Any, Any]:
    """(a coroutine function making one call, a close coroutine function)."""
    if kind.startswith("sessionlayer"):
        import sessionlayer
        from sessionlayer.apps.rpc import rpc_connect

        codec = kind.partition("-")[2]
        options = sessionlayer.Options(keepalive_interval=None, idle_timeout=None,
                                       tpdu_size=65408)  # fmt: skip
        rpc = await rpc_connect("127.0.0.1", port, codec=codec, options=options)
        arg: Any = PAYLOAD if codec == "msgpack" else TEXT

        async def call_sl() -> None:
            if await rpc.call("echo", arg) != arg:
                raise RuntimeError("bad echo")

        return call_sl, rpc.aclose
    if kind == "grpc":
        import grpc

        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        method = channel.unary_unary("/bench.Echo/Call")

        async def call_grpc() -> None:
            if await method(PAYLOAD) != PAYLOAD:
                raise RuntimeError("bad echo")

        return call_grpc, channel.close
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_RawClient, "127.0.0.1", port)

    async def call_raw() -> None:
        if await protocol.call(PAYLOAD) != PAYLOAD:
            raise RuntimeError("bad echo")

    async def close_raw() -> None:
        protocol.transport.close()

    return call_raw, close_raw


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


async def _measure(kind: str, port: int, n: int, sequential: int) -> dict[str, float]:
    call, close = await _client(kind, port)
    try:
        for _ in range(200):  # warm-up
            await call()
        perf = time.perf_counter
        times: list[float] = []
        left = iter(range(n))

        async def worker() -> None:
            for _ in left:
                started = perf()
                await call()
                times.append(perf() - started)

        started = perf()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), 300)
        rate = n / (perf() - started)
        alone: list[float] = []
        for _ in range(sequential):
            t0 = perf()
            await call()
            alone.append(perf() - t0)
    finally:
        await close()
    return {"calls_per_s": rate, "loaded_p50_us": pct(times, 50) * 1e6,
            "loaded_p99_us": pct(times, 99) * 1e6, "alone_p50_us": pct(alone, 50) * 1e6,
            "alone_p99_us": pct(alone, 99) * 1e6}  # fmt: skip


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def run_one(kind: str, n: int, sequential: int) -> dict[str, float]:
    server_kind = "sessionlayer" if kind.startswith("sessionlayer") else kind
    proc = subprocess.Popen([sys.executable, "-m", "bench.rpc", "--serve", server_kind],
                            stdout=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        return asyncio.run(_measure(kind, port, n, sequential))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


LABELS = {"sessionlayer-msgpack": "sessionlayer RPC, msgpack", "sessionlayer-json":
          "sessionlayer RPC, JSON", "grpc": "grpc.aio, raw bytes", "raw": "raw asyncio"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rpc")
    parser.add_argument("--quick", action="store_true", help="10,000 calls, not 50,000")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", choices=("sessionlayer", "grpc", "raw"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve = {"sessionlayer": _serve_sessionlayer, "grpc": _serve_grpc, "raw": _serve_raw}
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve[args.serve]())
        return 0
    n = 10_000 if args.quick else 50_000
    sequential = 500 if args.quick else 2000
    kinds = ["sessionlayer-json"]
    if _available("msgpack"):
        kinds.insert(0, "sessionlayer-msgpack")
    grpc_missing = not _available("grpc")
    if not grpc_missing:
        kinds.append("grpc")
    kinds.append("raw")
    results: dict[str, Any] = {"calls": n, "concurrency": CONCURRENCY}
    for kind in kinds:
        results[kind] = run_one(kind, n, sequential)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"RPC echo of 64 octets on loopback, {n:,} calls with {CONCURRENCY} in flight, then"
          f" {sequential:,} one at a time (python -m bench.rpc{' --quick' if args.quick else ''})")
    print(f"  {'':28}{'calls/s':>10}{'loaded p50':>12}{'p99 (us)':>10}"
          f"{'alone p50':>11}{'p99 (us)':>10}")
    for kind in kinds:
        r = results[kind]
        print(f"  {LABELS[kind]:28}{r['calls_per_s']:>10,.0f}{r['loaded_p50_us']:>12,.0f}"
              f"{r['loaded_p99_us']:>10,.0f}{r['alone_p50_us']:>11,.0f}{r['alone_p99_us']:>10,.0f}")
    if grpc_missing:
        print("  (grpcio is not installed: pip install 'sessionlayer[bench]' for grpc.aio)")
    best = kinds[0]
    if "grpc" in results:
        ratio = results[best]["calls_per_s"] / results["grpc"]["calls_per_s"]
        print(f"  {LABELS[best]} / grpc.aio: {ratio:.2f}x calls/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
