"""The admin endpoint's own bounds: at most MAX_CONNECTIONS connections at once (past it a
new one is closed at once) and LIFETIME per connection.  Before there were none: 371 idle
connections took every descriptor of a server run with 256, its session port stopped
answering, and a client sending one header line every 5 s stayed for good."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import sessionlayer
from sessionlayer.commands import admin


@contextlib.asynccontextmanager
async def admin_endpoint() -> AsyncIterator[Any]:
    """A session server (its handler reads until the end) and its admin endpoint."""

    async def handler(session: sessionlayer.Session) -> None:
        async for _ in session:
            pass

    async with await sessionlayer.serve(handler) as server:
        endpoint = await admin.start_admin(server, "127.0.0.1", 0, lambda _: None)
        try:
            yield endpoint
        finally:
            await endpoint.cleanup()


def idle_connections(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


def closed_by_the_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def get_metrics(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_connections_are_bounded_in_number_and_in_time() -> None:
    async def main() -> None:
        async with admin_endpoint() as endpoint:
            port = endpoint.addresses[0][1]
            endpoint.guarded.lifetime = 1.0

            def check() -> None:
                socks = idle_connections(port, admin.MAX_CONNECTIONS)
                try:
                    (extra,) = idle_connections(port, 1)
                    assert closed_by_the_server(extra, 5)  # one too many: at once
                    extra.close()
                    started = time.monotonic()
                    # the idle ones end at their lifetime (a slow client's too)
                    socks[0].sendall(b"GET /metrics HTTP/1.1\r\n")
                    assert all(closed_by_the_server(s, 10) for s in socks)
                    assert time.monotonic() - started < 10
                finally:
                    for sock in socks:
                        sock.close()

            await asyncio.to_thread(check)
            assert endpoint.guarded.refused == 1
            endpoint.guarded.lifetime = 30.0
            answer = await asyncio.to_thread(get_metrics, port)
            assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200")
            assert b"sessionlayer_sessions_live" in answer

    asyncio.run(asyncio.wait_for(main(), 60))


def test_live_status_stopped_by_sigterm_shows_the_cursor_again() -> None:
    """Live ``status`` on a terminal, SIGTERM: exit 143 and the cursor shown again (before:
    no line, and the terminal was left with its cursor hidden)."""
    import os
    import pty
    import selectors
    import signal
    import subprocess
    import sys

    async def main() -> None:
        async with admin_endpoint() as endpoint:
            await asyncio.to_thread(run_status, endpoint.addresses[0][1])

    def run_status(port: int) -> None:
        primary, secondary = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "sessionlayer", "status",
                                 f"127.0.0.1:{port}"], stdin=secondary, stdout=secondary,
                                stderr=secondary)  # fmt: skip
        os.close(secondary)
        seen = b""
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(primary, selectors.EVENT_READ)
                deadline = time.monotonic() + 20
                while b"\x1b[?25l" not in seen and time.monotonic() < deadline:
                    if sel.select(1):
                        seen += os.read(primary, 65536)
                assert b"\x1b[?25l" in seen, seen  # the live view hid the cursor
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 143
                while sel.select(0.5):
                    try:
                        chunk = os.read(primary, 65536)
                    except OSError:  # (EIO: the other side is closed)
                        break
                    if not chunk:
                        break
                    seen += chunk
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(primary)
        assert seen.rfind(b"\x1b[?25h") > seen.rfind(b"\x1b[?25l"), seen[-300:]
        assert b"terminated" in seen and b"Traceback" not in seen

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_narrow_terminal_folds_the_table_never_cuts_a_number() -> None:
    """At 60 columns the octet counts showed as "1…" and "2…" (read as other numbers)."""
    import io

    from rich.console import Console

    from sessionlayer.commands import status

    async def main() -> Any:
        async def handler(session: sessionlayer.Session) -> None:
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(handler) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port)
            await client.send(b"x" * 1000)
            await client.receive()
            doc = admin.sessions_json(server, lambda _: None)
            await client.release()
            return doc

    doc = asyncio.run(asyncio.wait_for(main(), 30))
    out = io.StringIO()
    Console(file=out, width=60).print(status._table(doc))
    text = out.getvalue()
    assert "…" not in text, text
