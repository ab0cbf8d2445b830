"""The TCP tunnel (issue 12) beside a direct TCP connection, in the same run.

    python -m bench.tunnel            # 512 MiB per direction
    python -m bench.tunnel --quick    # 64 MiB
    python -m bench.tunnel --json
    python -m bench.tunnel --delay 20 # a long link: 20 ms each way (growing windows)

Four processes, as a user runs them, all on 127.0.0.1:

* a target (a child process; threads and blocking sockets): per connection, by its first
  line, ``up`` reads to EOF and answers the count, ``down N`` sends N octets and closes,
  ``echo`` echoes;
* ``sessionlayer serve --allow-tunnel`` (the tunnel's server side) and ``sessionlayer
  tunnel`` (its client side; one for the shared session, one with ``--per-connection``),
  each a process;
* this process, the application: blocking sockets, 1 MiB writes and reads.

Measured, through the tunnel and directly to the target:

* one stream's throughput up (application to target) and down, MB/s (10**6 octets/s),
  from the first write to the target's last octet (its answer, or EOF);
* four streams up at once (aggregate);
* a new connection's first exchange (connect, one 64-octet echo), p50 over 200, shared
  session and a session per connection;
* 64-octet echo round trips on one connection, p50 and p99 over 2,000.

The machine has 2 cores for the 4 processes of the tunnel (2 for the direct case): the
ratios include that.

``--delay MS`` measures a long link instead: a proxy (bench/delayproxy.py, a process of
its own) delays every octet by MS milliseconds each way, between the tunnel's client and
server, and in front of the target for the direct case.  One stream up and one down
(``--quick``: 64 MiB, else 256 MiB), through the tunnel with its windows growing (the
default), through the tunnel with the windows fixed at 1 MiB (``--max-window 1024`` and
the server's ``--tunnel-max-window 1024``: as before windows grew), and directly (TCP,
whose own windows grow).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20
BLOCK = b"\xa5" * MIB

_TARGET = r"""
import socket, sys, threading
server = socket.create_server(("127.0.0.1", 0), backlog=512)
print(server.getsockname()[1], flush=True)
block = b"\x5a" * (1 << 20)
def serve(conn):
    with conn:
        f = conn.makefile("rb")
        line = f.readline().split()
        if not line:
            return
        if line[0] == b"up":
            n = 0
            while True:
                data = f.read1(1 << 20)
                if not data:
                    break
                n += len(data)
            conn.sendall(b"%d\n" % n)
        elif line[0] == b"down":
            left = int(line[1])
            while left:
                k = min(left, len(block))
                conn.sendall(block[:k])
                left -= k
        elif line[0] == b"echo":
            while True:
                data = f.read1(65536)
                if not data:
                    break
                conn.sendall(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}",
                PYTHONUNBUFFERED="1")  # fmt: skip


class Procs:
    """The child processes of the bench (ended at exit, also on ^C)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], pattern: str) -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=_env())  # fmt: skip
        self.procs.append(proc)
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if m := re.search(pattern, line):
                return proc, int(m.group(1))
        raise RuntimeError(f"{argv[:4]} did not start")

    def close(self) -> None:
        """The last started first: a tunnel client releases its session while the proxy
        and the server it goes through are still there."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sessionlayer", *args]


def up(port: int, size: int) -> float:
    """Send ``size`` octets; seconds until the target says it has them all."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sock.sendall(b"up\n")
        left = size
        while left:
            k = min(left, len(BLOCK))
            sock.sendall(BLOCK[:k] if k < len(BLOCK) else BLOCK)
            left -= k
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").readline()
        took = time.perf_counter() - started
    if int(answer) != size:
        raise RuntimeError(f"the target got {answer!r} octets, not {size}")
    return took


def down(port: int, size: int) -> float:
    """Ask for ``size`` octets; seconds until the last one came."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sock.sendall(b"down %d\n" % size)
        got = 0
        buf = bytearray(MIB)
        while True:
            n = sock.recv_into(buf)
            if not n:
                break
            got += n
        took = time.perf_counter() - started
    if got != size:
        raise RuntimeError(f"got {got} octets, not {size}")
    return took


def parallel_up(port: int, size: int, streams: int) -> float:
    """``streams`` connections, ``size`` octets each, at once: seconds for all."""
    times: list[float] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            times.append(up(port, size))
        except BaseException as exc:
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def first_exchange(port: int, n: int) -> list[float]:
    """Seconds from connect() to the first 64-octet echo, ``n`` times."""
    out = []
    payload = b"e" * 63 + b"\n"
    for _ in range(n):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"echo\n" + payload)
            f = sock.makefile("rb")
            if f.readline() != payload:
                raise RuntimeError("bad echo")
            out.append(time.perf_counter() - started)
    return out


def round_trips(port: int, n: int) -> list[float]:
    """Seconds per 64-octet echo on one connection (after 200 unmeasured)."""
    payload = b"r" * 63 + b"\n"
    out = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"echo\n")
        f = sock.makefile("rb")
        for i in range(n + 200):
            started = time.perf_counter()
            sock.sendall(payload)
            if f.readline() != payload:
                raise RuntimeError("bad echo")
            if i >= 200:
                out.append(time.perf_counter() - started)
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def measure(ports: dict[str, int], size: int, quick: bool,
            tunnel_pids: list[int]) -> dict[str, Any]:  # fmt: skip
    results: dict[str, Any] = {}
    for name in ("direct", "tunnel"):
        port = ports[name]
        cpu = cpu_seconds(tunnel_pids)
        results[name] = {
            "up_mbps": size / up(port, size) / 1e6,
            "down_mbps": size / down(port, size) / 1e6,
            "parallel4_up_mbps": 4 * (size // 4) / parallel_up(port, size // 4, 4) / 1e6,
        }
        if name == "tunnel":  # CPU of the tunnel's two processes per GB carried (3 passes)
            results["tunnel_cpu_s_per_gb"] = (cpu_seconds(tunnel_pids) - cpu) / (3 * size / 1e9)
    for name in ("direct", "tunnel", "per_connection"):
        firsts = first_exchange(ports[name], 50 if quick else 200)
        results.setdefault(name, {})["first_exchange_p50_ms"] = pct(firsts, 50) * 1e3
    for name in ("direct", "tunnel"):
        rtts = round_trips(ports[name], 500 if quick else 2000)
        results[name]["rtt_p50_us"] = pct(rtts, 50) * 1e6
        results[name]["rtt_p99_us"] = pct(rtts, 99) * 1e6
    return results


def long_link(delay_ms: float, quick: bool, as_json: bool) -> int:
    """``--delay``: one stream each way over a long link, growing windows, fixed, direct."""
    size = (64 if quick else 256) * MIB
    delay = str(delay_ms / 1e3)
    procs = Procs()
    results: dict[str, Any] = {"delay_ms": delay_ms, "size": size}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tunnel-") as tmp:
            _, target = procs.start([sys.executable, "-c", _TARGET], r"^(\d+)")
            delaying = r"delaying on (\d+)"
            proxy_cmd = [sys.executable, "-m", "bench.delayproxy"]
            _, long_target = procs.start([*proxy_cmd, str(target), delay], delaying)
            ports = {}
            for name, window in (("growing", "16384"), ("fixed", "1024")):
                _, server = procs.start(
                    _cli("serve", "--port", "0", "--data-dir", f"{tmp}/{name}", "--store",
                         "memory", "--allow-tunnel", f"127.0.0.1:{target}",
                         "--tunnel-max-window", window),
                    r"listening on tcp://[\d.]+:(\d+)")  # fmt: skip
                _, long_server = procs.start([*proxy_cmd, str(server), delay], delaying)
                _, ports[name] = procs.start(
                    _cli("tunnel", "--listen", "0", "--via", f"127.0.0.1:{long_server}",
                         "--max-window", window),
                    r"listening on [\d.]+:(\d+),")  # fmt: skip
            auto, fixed = ports["growing"], ports["fixed"]
            for name, port in (("growing", auto), ("fixed", fixed), ("direct", long_target)):
                up(port, MIB)  # (the session, and the windows, start afresh per stream)
                results[name] = {"up_mbps": size / up(port, size) / 1e6,
                                 "down_mbps": size / down(port, size) / 1e6}  # fmt: skip
    finally:
        procs.close()
    if as_json:
        print(json.dumps(results))
        return 0
    g, f, d = results["growing"], results["fixed"], results["direct"]
    print(f"TCP tunnel over a long link: {delay_ms:g} ms each way (bench/delayproxy.py),"
          f" {size // MIB} MiB per direction (python -m bench.tunnel --delay {delay_ms:g}"
          f"{' --quick' if quick else ''})")
    print(f"  {'one stream (MB/s)':20}{'growing':>10}{'fixed 1 MiB':>13}{'direct TCP':>12}"
          f"{'growing/direct':>16}{'fixed/direct':>14}")
    for key, label in (("up_mbps", "up"), ("down_mbps", "down")):
        print(f"  {label:20}{g[key]:>10.1f}{f[key]:>13.1f}{d[key]:>12.1f}"
              f"{g[key] / d[key]:>15.2f}x{f[key] / d[key]:>13.2f}x")
    print("  (one run each)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tunnel")
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of 512 MiB")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--delay", type=float, metavar="MS",
                        help="a long link: MS milliseconds each way (see above)")
    args = parser.parse_args(argv)
    if args.delay is not None:
        return long_link(args.delay, args.quick, args.json)
    size = (64 if args.quick else 512) * MIB
    procs = Procs()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tunnel-") as tmp:
            _, target = procs.start([sys.executable, "-c", _TARGET], r"^(\d+)")
            server_proc, server = procs.start(
                _cli("serve", "--port", "0", "--data-dir", tmp, "--store", "memory",
                     "--allow-tunnel", f"127.0.0.1:{target}"),
                r"listening on tcp://[\d.]+:(\d+)")  # fmt: skip
            shared_proc, shared = procs.start(_cli("tunnel", "--listen", "0", "--via",
                                         f"127.0.0.1:{server}"), r"listening on [\d.]+:(\d+),")
            _, single = procs.start(_cli("tunnel", "--listen", "0", "--via",
                                         f"127.0.0.1:{server}", "--per-connection"),
                                    r"listening on [\d.]+:(\d+),")  # fmt: skip
            ports = {"direct": target, "tunnel": shared, "per_connection": single}
            results = measure(ports, size, args.quick, [server_proc.pid, shared_proc.pid])
    finally:
        procs.close()
    results["size"] = size
    if args.json:
        print(json.dumps(results))
        return 0
    d, t = results["direct"], results["tunnel"]
    print(f"TCP tunnel on loopback, {size // MIB} MiB per direction (python -m bench.tunnel"
          f"{' --quick' if args.quick else ''}); 4 processes through the tunnel, 2 direct")
    print(f"  {'':34}{'tunnel':>12}{'direct TCP':>12}{'ratio':>8}")
    for key, label, unit in (("up_mbps", "one stream up", "MB/s"),
                             ("down_mbps", "one stream down", "MB/s"),
                             ("parallel4_up_mbps", "four streams up (total)", "MB/s"),
                             ("rtt_p50_us", "64 B echo round trip p50", "us"),
                             ("rtt_p99_us", "64 B echo round trip p99", "us"),
                             ("first_exchange_p50_ms", "new connection + echo p50", "ms")):
        print(f"  {label + ' (' + unit + ')':34}{t[key]:>12.1f}{d[key]:>12.1f}"
              f"{t[key] / d[key]:>7.2f}x")
    print(f"  {'CPU of the two tunnel processes (s per GB carried)':58}"
          f"{results['tunnel_cpu_s_per_gb']:>8.2f}")
    pc = results["per_connection"]["first_exchange_p50_ms"]
    print(f"  {'new connection + echo p50 (ms), a session per connection':58}{pc:>8.2f}")
    print("  (one run each; nearest-rank percentiles)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
