"""A file transfer through a server that stops and starts again (its sessions restored from
the store, by a new FileService): at the worst moments, the whole file received and the
last confirm not yet heard by the sender."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from tests.faults.proxy import FaultProxy

from sessionlayer import Options
from sessionlayer.aio import serve
from sessionlayer.apps.files import FileService, send_file
from sessionlayer.commands.serve import SERVER_CONFIG
from sessionlayer.recovery import Backoff
from sessionlayer.stores.memory import MemoryStore

from .helpers import pattern, run

CLIENT = Options(backoff=Backoff(first=0, cap=0.05, give_up=20.0), tpdu_size=65408)


async def start(tmp_path: Path, store: Any, port: int = 0) -> Any:
    """A server of the file service on ``tmp_path``'s directories (a FileService of its own,
    as a server process started again has) with ``store``."""
    service = FileService(tmp_path / "files", tmp_path / "transfers")

    def authenticate(request: Any) -> bool:
        return bool(request.resuming or service.check(request))

    return await serve(service.handle, "127.0.0.1", port, authenticate=authenticate,
                       supported={"service": ["files"]}, config=SERVER_CONFIG, store=store,
                       options=Options(tpdu_size=65408, resume_timeout=30))  # fmt: skip


def test_a_server_stopped_after_the_last_checkpoint_before_its_confirm_came_back_ends_it(
    tmp_path: Path,
) -> None:
    """The store has the last checkpoint (the file is under its name), its MAA is lost, the
    server stops; started again, it restores the session there: the sender's resume makes
    the last point again, which is confirmed, and the transfer ends in success (it was
    refused: "resumed at a checkpoint this side never confirmed ... --restart")."""
    data = pattern(5, 3 * (1 << 20) + 777)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    store = MemoryStore()
    last_kept = asyncio.Event()

    async def main() -> None:
        server = await start(tmp_path, store)
        port = server.port
        proxy = FaultProxy("127.0.0.1", port, seed=1)
        await proxy.start()
        real_update = store.update

        async def update(session_id: str, **kw: Any) -> bool:
            done = await real_update(session_id, **kw)
            checkpoint = kw.get("checkpoint")
            last = b'"h"' in bytes(getattr(checkpoint, "user_data", None) or b"")
            if last and not last_kept.is_set():
                proxy.cut("blackhole")  # (before the MAA goes: it never reaches the sender)
                last_kept.set()
            return done

        store.update = update  # type: ignore[method-assign]
        sending = asyncio.ensure_future(send_file(
            source, "127.0.0.1", proxy.port, checkpoint=1 << 20, state_dir=tmp_path / "st",
            options=CLIENT))  # fmt: skip
        again = None
        try:
            await asyncio.wait_for(last_kept.wait(), 60)
            assert (tmp_path / "files" / "a.bin").read_bytes() == data
            server.close(detach=True)  # (its sessions stay in the store)
            await server.wait_closed()
            again = await start(tmp_path, store, port)
            proxy.cut("reset")
            result = await asyncio.wait_for(sending, 60)
            assert result.sha256 == hashlib.sha256(data).hexdigest()
            assert result.restores == 1
            assert (tmp_path / "files" / "a.bin").read_bytes() == data
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            for s in (server, again):
                if s is not None:
                    s.close()
                    await s.wait_closed()
            await proxy.close()

    (tmp_path / "st").mkdir()
    run(main())
