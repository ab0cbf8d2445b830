"""A file transfer on loopback: ``sessionlayer send`` beside a plain Python TCP copy and
rsync to a local rsync daemon, in the same run (issue 10).

    python -m bench.files            # 1 GiB, a checkpoint every 64 MiB
    python -m bench.files --quick    # 256 MiB
    python -m bench.files --json

Each copies the same file from one directory to another on this machine, over TCP on
127.0.0.1, and makes it durable at the end:

* sessionlayer: a ``sessionlayer serve`` process (its default SQLite store) receives it;
  this process sends it with ``send_file`` (1020 KiB S-DATA, a major sync point every
  64 MiB whose user data records the offset and the SHA-256 chain; the receiver fsyncs
  before it confirms each, checks the whole file's SHA-256 at the end and renames it).
  The sender reads and hashes in a thread ahead of what it sends; the receiver writes
  (direct I/O where the file system has it) and hashes in threads beside its event loop.
* plain TCP: a child process accepts one connection, writes what it reads (1 MiB reads) to
  the file and fsyncs at EOF; this process sends with ``socket.sendfile``.  No hashing.
* rsync: ``rsync --daemon`` on a free port with one module; ``rsync --whole-file`` (no
  delta: the target does not exist) pushes the file; rsync checks its own checksum.

Reported: MB/s (10**6 octets per second, from the start of the client to its end, the
receiver's fsync included), the median of ``--repeat`` runs of each (3; run in turn, so that
a slow spell of this shared machine falls on all three), sessionlayer's ratio to each
median (target: >= 0.8x the plain copy), and the ratio run by run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20

_RECEIVER = r"""
import os, socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
with open(sys.argv[1], "wb") as f:
    while True:
        data = conn.recv(1 << 20)
        if not data:
            break
        f.write(data)
    f.flush(); os.fsync(f.fileno())
conn.sendall(b"ok"); conn.close()
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")


def make_file(path: Path, size: int) -> None:
    block = os.urandom(4 * MIB)
    with open(path, "wb") as f:
        left = size
        while left:
            f.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def plain_copy(source: Path, target: Path) -> float:
    proc = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(target)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock, open(source, "rb") as f:
            sock.sendfile(f)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(2) == b"ok"
        return time.perf_counter() - started
    finally:
        proc.wait(timeout=60)


def rsync_copy(source: Path, target_dir: Path, work: Path) -> float | None:
    rsync = shutil.which("rsync")
    if rsync is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = work / "rsyncd.conf"
    config.write_text(f"use chroot = no\nuid = {os.getuid()}\ngid = {os.getgid()}\n"
                      f"[bench]\npath = {target_dir}\nread only = no\n")
    daemon = subprocess.Popen([rsync, "--daemon", "--no-detach", f"--port={port}",
                               "--address=127.0.0.1", f"--config={config}"])  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:  # (until the daemon listens: bounded)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        started = time.perf_counter()
        subprocess.run([rsync, "--whole-file", str(source), f"rsync://127.0.0.1:{port}/bench/"],
                       check=True)  # fmt: skip
        return time.perf_counter() - started
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


async def _sessionlayer(source: Path, data_dir: Path, checkpoint: int) -> float:
    from sessionlayer.apps.files import send_file

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessionlayer", "serve", "--port", "0", "--data-dir",
        str(data_dir), "--log-format", "json", env=_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(json.loads(await proc.stdout.readline())["port"])
        started = time.perf_counter()
        await send_file(source, "127.0.0.1", port, checkpoint=checkpoint,
                        state_dir=data_dir / "client-state")  # fmt: skip
        return time.perf_counter() - started
    finally:
        proc.terminate()
        await proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.files")
    parser.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--checkpoint", type=int, default=64, help="MiB (64)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each, alternated; the median is reported (3)")
    args = parser.parse_args(argv)
    size = (256 if args.quick else 1024) * MIB
    runs: dict[str, list[float]] = {"sessionlayer": [], "plain": [], "rsync": []}
    with tempfile.TemporaryDirectory(prefix="bench-files-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        if shutil.disk_usage(work).free < 3 * size:
            print(f"bench.files: needs {3 * size // MIB} MiB free in {work}", file=sys.stderr)
            return 1
        source = work / "source.bin"
        make_file(source, size)
        for _ in range(max(1, args.repeat)):  # (alternated: a slow spell of the host hits all)
            secs = asyncio.run(_sessionlayer(source, work / "srv", args.checkpoint * MIB))
            runs["sessionlayer"].append(size / secs / 1e6)
            (work / "srv" / "files" / "source.bin").unlink()
            secs = plain_copy(source, work / "plain.bin")
            runs["plain"].append(size / secs / 1e6)
            (work / "plain.bin").unlink()
            rsync_dir = work / "rsync"
            shutil.rmtree(rsync_dir, ignore_errors=True)
            rsync_dir.mkdir()
            secs_rsync = rsync_copy(source, rsync_dir, work)
            if secs_rsync:
                runs["rsync"].append(size / secs_rsync / 1e6)
    results: dict[str, Any] = {"size": size, "checkpoint_mib": args.checkpoint, "runs": runs}
    for name, rates in runs.items():
        results[name] = statistics.median(rates) if rates else None
    ratios = [a / b for a, b in zip(runs["sessionlayer"], runs["plain"], strict=True)]
    results["ratio_per_run"] = ratios
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"file transfer on loopback, {size // MIB} MiB, a checkpoint every"
          f" {args.checkpoint} MiB, median of {len(ratios)} alternated runs"
          f" (python -m bench.files{' --quick' if args.quick else ''})")
    print(f"  {'':24}{'MB/s':>10}{'sessionlayer / it':>20}")
    for name in ("sessionlayer", "plain", "rsync"):
        rate = results[name]
        if rate is None:
            print(f"  {name:24}{'(rsync not installed)':>10}")
            continue
        ratio = results["sessionlayer"] / rate
        label = {"sessionlayer": "sessionlayer send", "plain": "plain Python TCP copy",
                 "rsync": "rsync to rsyncd"}[name]  # fmt: skip
        print(f"  {label:24}{rate:>10.1f}{ratio:>19.2f}x")
    print("  sessionlayer / plain copy, run by run: " + ", ".join(f"{r:.2f}x" for r in ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
