"""Issue 12 run as the user runs it: ``sessionlayer serve --allow-tunnel ... --rpc ...`` and
``sessionlayer tunnel`` in processes of their own, the fault proxy between them; what
``sessionlayer status`` and ``/metrics`` show; mistakes in one clear line."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from tests.apps.helpers import Target, echo, pattern
from tests.faults.proxy import FaultProxy

from sessionlayer.apps.rpc import rpc_connect

from .files_helpers import ENV, LIMIT, Serve, cli

PIPE = asyncio.subprocess.PIPE


class Tunnel:
    """``sessionlayer tunnel`` in a process of its own."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.banner = ""

    async def start(self) -> Tunnel:
        self.proc = await asyncio.create_subprocess_exec(
            *cli("tunnel", "--listen", "0", *self.args), env=ENV, stdout=PIPE, stderr=PIPE)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        async with asyncio.timeout(LIMIT):
            line = (await self.proc.stdout.readline()).decode()
        self.banner = line
        m = re.search(r"listening on [^ ]+:(\d+),", line)
        if not m:
            raise RuntimeError("tunnel: " + line + (await self.proc.stderr.read()).decode())
        self.port = int(m.group(1))
        return self

    async def stop(self) -> tuple[str, str]:
        assert self.proc is not None
        self.proc.terminate()
        async with asyncio.timeout(LIMIT):
            out, err = await self.proc.communicate()
        return out.decode(), err.decode()


def admin_get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return bytes(answer.read())


def test_serve_and_tunnel_carry_a_stream_through_cuts_and_show_it(tmp_path: Path) -> None:
    async def main() -> None:
        target = await Target(echo).start()
        server = await Serve(tmp_path / "srv", "--allow-tunnel", f"127.0.0.1:{target.port}",
                             "--admin", "127.0.0.1:0").start()  # fmt: skip
        tunnel = None
        opened: list[asyncio.StreamWriter] = []
        try:
            async with FaultProxy("127.0.0.1", server.port, seed=4) as proxy:
                tunnel = await Tunnel("--via", f"127.0.0.1:{proxy.port}").start()
                proxy.schedule(cut_after_bytes=(100_000, 600_000), modes=("reset", "close"),
                               max_cuts=10)  # fmt: skip
                proxy.cut("reset")
                reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
                opened.append(writer)
                payload = pattern(8, 4 << 20)

                async def push() -> None:
                    writer.write(payload)
                    await writer.drain()
                    writer.write_eof()

                pusher = asyncio.ensure_future(push())
                async with asyncio.timeout(LIMIT):
                    got = await reader.read(-1)
                    await pusher
                assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
                assert proxy.cuts >= 5
                # A second connection, left open: the admin endpoint shows it.
                r2, w2 = await asyncio.open_connection("127.0.0.1", tunnel.port)
                opened.append(w2)
                w2.write(b"hi\n")
                assert await asyncio.wait_for(r2.readline(), LIMIT) == b"hi\n"
                assert server.admin_port is not None
                data = json.loads(admin_get(server.admin_port, "/sessions"))
                (session,) = data["sessions"]
                progress = session["progress"]
                assert progress["service"] == "tunnel" and progress["streams"] == 1
                assert progress["opened"] == 2 and progress["to_target"] == len(payload) + 3
                assert progress["targets"] == [f"127.0.0.1:{target.port}"]
                assert session["resumes"] >= 5
                metrics = admin_get(server.admin_port, "/metrics").decode()
                assert "sessionlayer_tunnel_streams 1.0" in metrics
                assert "sessionlayer_tunnel_streams_opened_total 2.0" in metrics
                status = subprocess.run(
                    cli("status", f"127.0.0.1:{server.admin_port}", "--once"),
                    env=ENV, capture_output=True, text=True, timeout=LIMIT, check=True,
                )  # fmt: skip
                assert "tunnel 1/2 up 4.2M down 4.2M" in status.stdout, status.stdout
                w2.close()
                writer.close()
                out, err = await tunnel.stop()
                tunnel = None
                assert "stopped (2 connections carried" in out, out + err
                assert "Traceback" not in err, err
        finally:
            for each in opened:
                each.close()
            if tunnel is not None:
                await tunnel.stop()
            await server.stop()
            await target.close()
        assert "Traceback" not in server.err.decode()

    asyncio.run(asyncio.wait_for(main(), 110))


REGISTRY = '''
from sessionlayer.apps.rpc import Registry

registry = Registry()
total = 0

@registry.method
def add(n):
    global total
    total += n
    return total
'''


def test_serve_rpc_hosts_a_registry(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text(REGISTRY)

    async def main() -> None:
        env = dict(ENV, PYTHONPATH=f"{ENV['PYTHONPATH']}:{tmp_path}")
        argv = cli("serve", "--port", "0", "--data-dir", str(tmp_path / "srv"), "--rpc",
                   "calc:registry", "--admin", "127.0.0.1:0", "--log-format", "json")
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=PIPE, stderr=PIPE)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(LIMIT):
                admin_line = (await proc.stdout.readline()).decode()
                info = json.loads((await proc.stdout.readline()).decode())
            assert info["services"] == ["files", "rpc"]
            admin_port = json.loads(admin_line)["port"]  # (JSON too: --log-format json)
            async with await rpc_connect("127.0.0.1", info["port"]) as rpc:
                results = await asyncio.wait_for(
                    asyncio.gather(*(rpc.call("add", 1) for _ in range(100))), LIMIT)
                assert sorted(results) == list(range(1, 101))
                data = json.loads(admin_get(admin_port, "/sessions"))
                (session,) = data["sessions"]
                assert session["progress"]["service"] == "rpc"
                assert session["progress"]["calls"] == 100
                metrics = admin_get(admin_port, "/metrics").decode()
                assert 'sessionlayer_rpc_calls_total{outcome="ok"} 100.0' in metrics
        finally:
            proc.terminate()
            async with asyncio.timeout(LIMIT):
                _, err = await proc.communicate()
        assert "Traceback" not in err.decode()

    asyncio.run(asyncio.wait_for(main(), 110))


def one_line_error(*args: str, code: int = 1, cwd: Path | None = None) -> str:
    """The one line a failing command writes; its exit status must be ``code`` (2: a usage
    mistake, 1: a failure the command reports)."""
    done = subprocess.run(cli(*args), env=ENV, capture_output=True, text=True, timeout=LIMIT,
                          cwd=cwd)  # fmt: skip
    assert done.returncode == code, (args, done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "srv"), "--port", "0"]
    assert "--allow-tunnel" in one_line_error("serve", *data, "--allow-tunnel", "nohost",
                                              code=2)  # fmt: skip
    assert "--allow-tunnel" in one_line_error("serve", *data, "--allow-tunnel", "h:0", code=2)
    # (an empty entry was dropped silently: a comma too many, or a list that was not filled)
    for empty in ("[::1]:22,", "", "h:1,,h:2"):
        line = one_line_error("serve", *data, "--allow-tunnel", empty, code=2)
        assert "--allow-tunnel" in line and "an empty entry" in line, line
    assert "cannot import" in one_line_error("serve", *data, "--rpc", "no_such_mod:x")
    assert "MODULE:NAME" in one_line_error("serve", *data, "--rpc", "justamodule", code=2)
    assert "not a sessionlayer" in one_line_error("serve", *data, "--rpc", "json:dumps")
    assert "cannot reach 127.0.0.1:1" in one_line_error("tunnel", "--listen", "0",
                                                        "--via", "127.0.0.1:1")
    assert "cannot reach 127.0.0.1:1" in one_line_error("tunnel", "--listen", "0",
                                                        "--via", "127.0.0.1:1",
                                                        "--per-connection")  # fmt: skip
    assert "--to" in one_line_error("tunnel", "--listen", "0", "--via", "127.0.0.1:1",
                                    "--to", "bad", code=2)


@pytest.mark.parametrize(("body", "raised"), [
    ("import sys\nsys.exit(3)\n", "SystemExit(3)"),
    ("raise GeneratorExit('at import')\n", "GeneratorExit('at import')"),
])  # fmt: skip
def test_an_rpc_module_that_exits_at_import_is_one_line_and_exit_1(
    tmp_path: Path, body: str, raised: str,
) -> None:
    """A module calling sys.exit(3) at import made serve exit 3, silently."""
    (tmp_path / "exitmod.py").write_text(body)
    data = ["--data-dir", str(tmp_path / "srv"), "--port", "0"]
    line = one_line_error("serve", *data, "--rpc", "exitmod:r", cwd=tmp_path)
    assert line == f"sessionlayer serve: --rpc exitmod:r: importing exitmod raised {raised}"


def test_ipv6_addresses_are_said_as_the_options_take_them(tmp_path: Path) -> None:
    """On ::1 the banners say [::1]:PORT (tcp://[::1]:PORT), what --via and --listen take
    back: they said tcp://::1:PORT and ::1:PORT, which a user pasting them got refused
    ("not an address")."""
    from sessionlayer.commands import parse_address

    async def main() -> None:
        target = await Target(echo).start()
        server = await Serve(tmp_path / "srv", "--host", "::1", "--allow-tunnel",
                             f"127.0.0.1:{target.port}").start()  # fmt: skip
        tunnel = None
        try:
            assert server.proc is not None and server.proc.stdout is not None
            banner = re.search(r"listening on tcp://(\S+) ", server.banner)
            assert banner, server.banner
            assert parse_address(banner.group(1)) == ("::1", server.port)
            tunnel = await Tunnel("--via", banner.group(1), "--listen", "[::1]:0").start()
            said = re.search(r"listening on (\S+), via (\S+) ", tunnel.banner)
            assert said, tunnel.banner
            assert parse_address(said.group(2)) == ("::1", server.port)
            assert parse_address(said.group(1), listen=True) == ("::1", tunnel.port)
            reader, writer = await asyncio.open_connection("::1", tunnel.port)
            writer.write(b"over ::1")
            writer.write_eof()
            async with asyncio.timeout(LIMIT):
                assert await reader.read() == b"over ::1"
            writer.close()
        finally:
            if tunnel is not None:
                await tunnel.stop()
            await server.stop()
            await target.close()

    asyncio.run(main())
