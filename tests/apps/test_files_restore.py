"""A file transfer through a server that stops and starts again (its sessions restored from
the store, by a new FileService): at the worst moments, the whole file received and the
last confirm not yet heard by the sender."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from tests.faults.proxy import FaultProxy

from sessionlayer import Options
from sessionlayer.aio import Session, serve
from sessionlayer.apps.files import FileService, SendResult, TransferError, get_file, send_file
from sessionlayer.apps.transfer_again import SessionLost, run_again
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


@pytest.mark.parametrize("op", ["send", "get"])
def test_a_transfer_whose_session_the_restarted_server_forgot_goes_on_in_a_new_one(
    tmp_path: Path, op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose store keeps nothing (a memory store) stops after the first checkpoint
    and starts again: the resume is refused ("unknown session"), and the transfer goes on
    in a new session from that checkpoint, as a rerun of the command does (it failed:
    "the server refused to resume the session", exit status 1)."""
    data = pattern(6, 4 * (1 << 20) + 99)
    (tmp_path / "files").mkdir()
    source = tmp_path / ("a.bin" if op == "send" else "files/a.bin")
    source.write_bytes(data)
    (tmp_path / "st").mkdir()
    (tmp_path / "out").mkdir()
    kept, hold = asyncio.Event(), asyncio.Event()
    real_sync = Session.sync
    calls = 0

    async def sync(self: Session, **kw: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # (the first checkpoint confirmed and recorded: the server goes)
            kept.set()
            await hold.wait()
        return await real_sync(self, **kw)

    monkeypatch.setattr(Session, "sync", sync)

    async def main() -> None:
        server = await start(tmp_path, MemoryStore())
        port = server.port
        if op == "send":
            going = send_file(source, "127.0.0.1", port, checkpoint=1 << 20,
                              state_dir=tmp_path / "st", options=CLIENT)  # fmt: skip
        else:
            going = get_file("a.bin", "127.0.0.1", port, output=tmp_path / "out",
                             checkpoint=1 << 20, state_dir=tmp_path / "st", options=CLIENT)
        task = asyncio.ensure_future(going)
        again = None
        try:
            await asyncio.wait_for(kept.wait(), 60)
            server.close(detach=True)  # (no abort: its clients try to resume)
            await server.wait_closed()
            again = await start(tmp_path, MemoryStore(), port)  # (it knows no session)
            hold.set()
            result = await asyncio.wait_for(task, 60)
            assert result.sha256 == hashlib.sha256(data).hexdigest()
            assert result.resumed_from == 0 and result.restores == 1, result
            assert result.sent > len(data)  # (from the checkpoint on, again)
            got = tmp_path / ("files" if op == "send" else "out") / "a.bin"
            assert got.read_bytes() == data
        finally:
            hold.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if again is not None:
                again.close()
                await again.wait_closed()

    run(main())


def test_a_send_stopped_before_its_first_checkpoint_reruns_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped (Ctrl-C: its state kept) while its first point waits for its confirm, the
    send's rerun resumes at offset 0 (it was refused: "no such interrupted transfer here
    (or its checkpoint is unknown): start it again with --restart")."""
    data = pattern(7, 2 * (1 << 20) + 5)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    (tmp_path / "st").mkdir()
    waiting = asyncio.Event()
    real_sync = Session.sync

    async def sync(self: Session, **kw: Any) -> int:
        if not waiting.is_set():
            waiting.set()
            await asyncio.Event().wait()  # (until cancelled)
        return await real_sync(self, **kw)

    monkeypatch.setattr(Session, "sync", sync)

    async def main() -> None:
        server = await start(tmp_path, MemoryStore())
        try:
            task = asyncio.ensure_future(send_file(
                source, "127.0.0.1", server.port, checkpoint=64 << 20,
                state_dir=tmp_path / "st", options=CLIENT))  # fmt: skip
            await asyncio.wait_for(waiting.wait(), 60)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            result = await send_file(source, "127.0.0.1", server.port, checkpoint=64 << 20,
                                     state_dir=tmp_path / "st", options=CLIENT)  # fmt: skip
            assert result.resumed_from == 0 and result.sent == len(data)
            assert (tmp_path / "files" / "a.bin").read_bytes() == data
        finally:
            server.close()
            await server.wait_closed()

    run(main())


def test_losses_in_a_row_past_the_give_up_time_say_to_rerun() -> None:
    """``run_again`` gives up once the lost sessions in a row span the give-up time: its
    line says to rerun the same command."""
    tries: list[bool] = []

    async def attempt(restart: bool) -> Any:
        tries.append(restart)
        raise SessionLost("the server refused to resume the session: unknown session",
                          SendResult("a", 1, 0, 0, 0, 0, 0, "", 0.0))

    async def main() -> None:
        with pytest.raises(TransferError, match=r"rerun the same command to resume$"):
            await run_again(attempt, True, 0.0)

    run(main())
    assert tries == [True]
