"""Running ``sessionlayer serve`` and ``sessionlayer send`` as the user would: subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LIMIT = 60.0
MIB = 1 << 20
#: The admin endpoint's port in serve's line (an IPv6 address in brackets).
ADMIN = r"admin on http://(?:\[[^\]]*\]|[^:]+):(\d+)"
ENV = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sessionlayer", *args]


class Serve:
    """``sessionlayer serve`` in a process of its own."""

    def __init__(self, data: Path, *extra: str, port: int = 0) -> None:
        self.data = data
        self.extra = extra
        self.port = port
        self.admin_port: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.err = b""
        self.banner = ""  # (its "listening on" line)

    async def start(self) -> Serve:
        argv = cli("serve", "--port", str(self.port), "--data-dir", str(self.data), *self.extra)
        self.proc = await asyncio.create_subprocess_exec(
            *argv, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        async with asyncio.timeout(LIMIT):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("serve ended: " + (await self.proc.stderr.read()).decode())
                if m := re.search(ADMIN, line):
                    self.admin_port = int(m.group(1))
                if m := re.search(r"listening on \w+://[^ ]+:(\d+)", line):
                    self.port = int(m.group(1))
                    self.banner = line
                    if "--admin" not in self.extra or self.admin_port is not None:
                        break
                    line = (await self.proc.stdout.readline()).decode()
                    m = re.search(ADMIN, line)
                    assert m, line
                    self.admin_port = int(m.group(1))
                    break
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        async with asyncio.timeout(LIMIT):
            _, err = await self.proc.communicate()
        self.err += err


async def send(*args: str, kill_after: int | None = None,
               ) -> tuple[int | None, str, str]:  # fmt: skip
    """Run ``sessionlayer send ...``; with ``kill_after`` SIGKILL it once its progress
    says that many octets were sent.  (exit status, stdout, stderr)"""
    return await transfer("send", *args, kill_after=kill_after)


async def transfer(command: str, *args: str, kill_after: int | None = None,
                   preexec: Callable[[], None] | None = None,
                   signum: int = signal.SIGKILL,
                   ) -> tuple[int | None, str, str]:  # fmt: skip
    """``sessionlayer COMMAND ...`` (send or get) as ``send`` runs it; ``preexec`` runs in
    the child before it starts (a resource limit); ``signum`` is what ``kill_after``
    sends."""
    proc = await asyncio.create_subprocess_exec(
        *cli(command, *args), env=ENV, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, preexec_fn=preexec)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out: list[str] = []
    async with asyncio.timeout(LIMIT):
        while line := (await proc.stdout.readline()).decode():
            out.append(line)
            m = re.search(r": (\d+)/\d+ octets", line)
            if kill_after is not None and m and int(m.group(1)) >= kill_after:
                proc.send_signal(signum)
                break
        err = (await proc.stderr.read()).decode()
        status = await proc.wait()
    return status, "".join(out), err


def result(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stdout
    obj: dict[str, Any] = json.loads(lines[-1])
    return obj


async def get(*args: str, kill_after: int | None = None) -> tuple[int | None, str, str]:
    """``sessionlayer get ...`` (the same runner as send)."""
    return await transfer("get", *args, kill_after=kill_after)


def make_file(path: Path, size: int, seed: int = 1) -> Path:
    block = hashlib.sha256(b"%d" % seed).digest() * (MIB // 32)
    with open(path, "wb") as f:
        left = size
        i = 0
        while left:
            chunk = hashlib.sha256(block[:64] + b"%d" % i).digest() + block
            f.write(chunk[:left])
            left -= min(left, len(chunk))
            i += 1
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
