"""IPv6 literals on the command line and in what it prints: ``[::1]:PORT`` is taken by
``send``, ``get`` and ``status``, and every line that shows an address brackets it (a bare
``::1:10102`` cannot be told from an address)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from .files_helpers import ENV, LIMIT, Serve, cli, result, send

MIB = 1 << 20


async def status(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cli("status", *args), env=ENV, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)  # fmt: skip
    async with asyncio.timeout(LIMIT):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_send_get_and_status_on_ipv6_loopback(tmp_path: Path) -> None:
    src = tmp_path / "six.bin"
    src.write_bytes(hashlib.sha256(b"six").digest() * (MIB // 16))
    (tmp_path / "state").mkdir()
    state = ["--state-dir", str(tmp_path / "state")]

    async def main() -> None:
        server = await Serve(tmp_path / "srv", "--host", "::1", "--admin", "[::1]:0").start()
        try:
            where = f"[::1]:{server.port}"
            status_, out, err = await send(str(src), where, "--json", "--checkpoint", "1",
                                           *state)  # fmt: skip
            assert status_ == 0, err
            assert result(out)["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
            # (the transfer's state is kept under the address as it is written)
            key = next(iter(json.loads((tmp_path / "state" / "transfers.json").read_text())
                            or {"none": 0}), "")  # fmt: skip
            assert key == "none" or key.startswith(f"{where}|"), key
            code, out, err = await status(f"[::1]:{server.admin_port}", "--json")
            assert code == 0, err
            assert "sessions" in json.loads(out)
            code, out, err = await status(f"[::1]:{server.admin_port}", "--once")
            assert code == 0 and "sessions" in out, err
        finally:
            await server.stop()
        lines = server.err.decode()
        assert "accepted from [::1]:" in lines, lines

    asyncio.run(main())


def test_an_unreachable_ipv6_server_is_shown_in_brackets(tmp_path: Path) -> None:
    src = tmp_path / "six.bin"
    src.write_bytes(b"x" * 100)
    (tmp_path / "state").mkdir()

    async def main() -> None:
        status_, _, err = await send(str(src), "[::1]:1", "--state-dir",
                                       str(tmp_path / "state"))  # fmt: skip
        assert status_ == 1, err
        assert "cannot reach [::1]:1: Connection refused" in err, err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        code, _, err = await status("[::1]:1", "--json")
        assert code == 1 and "http://[::1]:1" in err and err.count("\n") == 1, err

    asyncio.run(main())
