"""The file service against what should not happen (apps/files.py): a source that changes
while it is sent (either way), a peer whose S-ACTIVITY-RESUME names a checkpoint that was
never confirmed, a sender killed after the last confirm, and names the server's file
system does not take.  Real sessions on loopback, real files."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import sessionlayer
from sessionlayer import Options
from sessionlayer.aio import Session, serve
from sessionlayer.apps import files as files_app
from sessionlayer.apps.files import FileService, TransferError, get_file, send_file
from sessionlayer.commands.serve import SERVER_CONFIG
from sessionlayer.errors import SessionAborted

from .helpers import pattern, run

MIB = 1 << 20


@contextlib.asynccontextmanager
async def file_server(tmp_path: Path) -> AsyncIterator[tuple[FileService, int]]:
    """The file service on a free port, as ``sessionlayer serve`` hosts it."""
    service = FileService(tmp_path / "files", tmp_path / "transfers")
    server = await serve(service.handle, "127.0.0.1", 0, authenticate=lambda r: (
        service.check(r), True)[1], supported={"service": ["files"]},
        config=SERVER_CONFIG, options=Options(tpdu_size=65408))  # fmt: skip
    try:
        yield service, server.port
    finally:
        server.close()
        await server.wait_closed()


def rewrite(path: Path, seed: int) -> None:
    """``path`` rewritten in place, same size, other octets; its modification time moved on
    by a second (as a rewrite moves it, whatever the file system's timestamp granularity)."""
    before = path.stat()
    with open(path, "r+b") as f:
        f.write(pattern(seed, before.st_size))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))


def test_a_source_rewritten_while_it_is_sent_fails_and_never_arrives(tmp_path: Path) -> None:
    """Its SHA-256 is of the octets sent (old and new mixed): only the file's stat, taken
    again before each checkpoint and the last one, shows the change."""
    src = tmp_path / "c.bin"
    src.write_bytes(pattern(1, 12 * MIB))
    changed: list[int] = []

    def progress(state: dict[str, Any]) -> None:
        if not changed and state["done"] >= 3 * MIB:
            changed.append(state["done"])
            rewrite(src, 2)

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            with pytest.raises(TransferError, match=r"c\.bin changed while it was sent \(its"
                               r" modification time\).*--restart"):  # fmt: skip
                await send_file(src, "127.0.0.1", port, checkpoint=MIB,
                                state_dir=tmp_path / "state", progress=progress)  # fmt: skip

    run(main())
    assert changed
    assert not (tmp_path / "files" / "c.bin").exists()


def test_a_source_replaced_under_its_name_while_it_is_sent_fails(tmp_path: Path) -> None:
    src = tmp_path / "r.bin"
    src.write_bytes(pattern(1, 6 * MIB))
    other = tmp_path / "other.bin"
    other.write_bytes(pattern(2, 6 * MIB))

    def progress(state: dict[str, Any]) -> None:
        if other.exists() and state["done"] >= 2 * MIB:
            os.replace(other, src)  # (the open file loses its name: its ctime moves on)

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            with pytest.raises(TransferError, match=r"r\.bin changed while it was sent"):
                await send_file(src, "127.0.0.1", port, checkpoint=MIB,
                                state_dir=tmp_path / "state", progress=progress)  # fmt: skip

    run(main())
    assert not other.exists()
    assert not (tmp_path / "files" / "r.bin").exists()


def test_a_served_file_rewritten_while_it_is_fetched_fails_with_the_servers_reason(
    tmp_path: Path,
) -> None:
    served = tmp_path / "files" / "g.bin"
    served.parent.mkdir()
    served.write_bytes(pattern(1, 12 * MIB))
    out = tmp_path / "out"
    out.mkdir()
    changed: list[int] = []

    def progress(state: dict[str, Any]) -> None:  # (what this side received)
        if not changed and state["done"] >= 3 * MIB:
            changed.append(state["done"])
            rewrite(served, 2)

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            with pytest.raises(TransferError, match=r"the server stopped the transfer: g\.bin"
                               r" changed while it was sent"):  # fmt: skip
                await get_file("g.bin", "127.0.0.1", port, output=out, checkpoint=MIB,
                               state_dir=tmp_path / "state", progress=progress)  # fmt: skip

    run(main())
    assert changed
    assert not (out / "g.bin").exists()


@pytest.mark.parametrize("marker", [
    {"o": 1 << 30, "c": "00" * 32},  # far beyond the declared size
    {"o": 5, "c": "00" * 32},  # within it, never a checkpoint
    {"o": 0, "c": "11" * 32},  # the start, with a chain that is not the start's
    {"o": "5", "c": "00" * 32},
    {"c": "00" * 32},
])  # fmt: skip
def test_a_resume_at_a_checkpoint_never_confirmed_is_refused_and_leaves_nothing(
    tmp_path: Path, marker: dict[str, Any]
) -> None:
    """A peer's S-ACTIVITY-RESUME after a valid request (put 'bomb', 10 octets) names an
    offset and chain: the receiver goes on only from one of the checkpoints it recorded of
    that transfer (or the start).  Anything else ends the session with the reason, before
    a file or a state is made (an offset of 1 GiB made a 1 GiB sparse file, hashed it and
    left it behind)."""

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            request = {"op": "put", "name": "bomb", "size": 10, "mtime": 0}
            session = await files_app._connect("127.0.0.1", port, request, None, None, None,
                                               None)  # fmt: skip
            activity = os.urandom(6)
            await session.resume_activity(activity, activity, 0, user_data=json.dumps(
                {"name": "bomb", "size": 10, **marker}).encode())  # fmt: skip
            with pytest.raises(SessionAborted):
                async with asyncio.timeout(30):
                    await session.send(b"0123456789")
                    await session.receive()
            why = files_app._typed_error(session)
            assert why is not None and "never confirmed" in why and "--restart" in why, why

    run(main())
    assert list((tmp_path / "files").iterdir()) == []
    assert list((tmp_path / "transfers").iterdir()) == []


DAMAGED = [
    pytest.param("{not json", "not JSON", id="not-json"),
    pytest.param('{"activity": "ab"}', "no 'name' in it", id="a-key-missing"),
    pytest.param('{"activity": "ab", "name": "f", "size": "big", "mtime": 0,'
                 ' "checkpoints": []}', "not a transfer record", id="a-bad-size"),
    # (the decoder's RecursionError was taken for a symbolic link loop: "Too many levels
    # of symbolic links", no WARNING)
    pytest.param("[" * 100_000, "JSON nested too deep", id="nested-too-deep"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "what"), DAMAGED)
def test_a_resume_whose_record_is_damaged_is_refused_as_damaged_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record: str, what: str
) -> None:
    """The server's transfers/<activity>.json does not load: the client is told the
    server's record is damaged (it was told 'no such interrupted transfer here'), and the
    server logs a WARNING naming the file and what is wrong (it logged nothing)."""
    activity = "ab" * 6
    (tmp_path / "transfers").mkdir()
    damaged = tmp_path / "transfers" / f"{activity}.json"
    damaged.write_text(record)

    async def main() -> None:
        async with file_server(tmp_path) as (service, port):
            request = {"op": "put", "name": "f", "size": 10, "mtime": 0, "resume": {
                "activity": activity, "offset": 4, "chain": "00" * 32}}  # fmt: skip
            with pytest.raises(TransferError, match="the server refused") as info:
                await files_app._connect("127.0.0.1", port, request, None, None, None, None)
            assert "the server's record of this interrupted transfer is damaged" in str(
                info.value) and what in str(info.value), info.value  # fmt: skip
            assert "--restart" in str(info.value) and "no such" not in str(info.value)
            service.drop(activity, "f")  # (what a --restart that replaces it does)
            assert not damaged.exists()

    with caplog.at_level("WARNING", logger="sessionlayer"):
        run(main())
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(damaged) in m and "damaged" in m and what in m for m in warned), warned


def test_an_activity_resume_whose_record_is_damaged_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same record met at an S-ACTIVITY-RESUME in the session: the reason the client
    gets says the server's record is damaged (not a checkpoint 'never confirmed')."""
    activity = os.urandom(6)
    (tmp_path / "transfers").mkdir()
    damaged = tmp_path / "transfers" / f"{activity.hex()}.json"
    damaged.write_text("{not json")

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            request = {"op": "put", "name": "bomb", "size": 10, "mtime": 0}
            session = await files_app._connect("127.0.0.1", port, request, None, None, None,
                                               None)  # fmt: skip
            await session.resume_activity(activity, activity, 0, user_data=json.dumps(
                {"name": "bomb", "size": 10, "o": 5, "c": "00" * 32}).encode())  # fmt: skip
            with pytest.raises(SessionAborted):
                async with asyncio.timeout(30):
                    await session.send(b"0123456789")
                    await session.receive()
            why = files_app._typed_error(session)
            assert why is not None and "the server's record of the transfer is damaged" in why
            assert "--restart" in why, why

    with caplog.at_level("WARNING", logger="sessionlayer"):
        run(main())
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(damaged) in m and "not JSON" in m for m in warned), warned


class Killed(Exception):
    """The sender's process dies here (a kill, a crash)."""


def test_a_rerun_after_the_last_confirm_was_had_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed once the receiver confirmed the last checkpoint, before the sender forgot
    its state: the rerun finds the transfer finished on the server (the whole file's
    SHA-256 matches its record) and ends at once, not with 'start it again'."""
    size = 3 * MIB + 17
    src = tmp_path / "k.bin"
    src.write_bytes(pattern(4, size))
    sessions: list[Session] = []
    real_forget = files_app._Sender._forget

    def killed(self: Any) -> None:
        sessions.append(self.session)
        raise Killed

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            monkeypatch.setattr(files_app._Sender, "_forget", killed)
            with pytest.raises(Killed):
                await send_file(src, "127.0.0.1", port, checkpoint=MIB,
                                state_dir=tmp_path / "state")  # fmt: skip
            sessions[0].abort()  # (the dead process's connection goes)
            monkeypatch.setattr(files_app._Sender, "_forget", real_forget)
            assert (tmp_path / "files" / "k.bin").read_bytes() == src.read_bytes()
            result = await send_file(src, "127.0.0.1", port, checkpoint=MIB,
                                     state_dir=tmp_path / "state")  # fmt: skip
            assert (result.sent, result.resumed_from) == (0, size)
            assert result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
            states = files_app.load_states(files_app.state_file(tmp_path / "state"))
            assert states == {}  # (forgotten: a third run is a new transfer)
            result = await send_file(src, "127.0.0.1", port, checkpoint=MIB,
                                     state_dir=tmp_path / "state")  # fmt: skip
            assert result.sent == size

    run(main())
    assert (tmp_path / "files" / "k.bin").read_bytes() == src.read_bytes()


def test_a_rerun_after_a_kill_before_the_last_checkpoint_arrived_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after recording the whole file's SHA-256, before the last checkpoint left:
    the server has no record of it finished, so the rerun resumes from the last confirmed
    checkpoint (and a source changed meanwhile is refused: its whole hash differs)."""
    size = 3 * MIB + 17
    src = tmp_path / "k.bin"
    src.write_bytes(pattern(4, size))
    sessions: list[Session] = []
    real = files_app._Sender._finishing

    def killed(self: Any, sha256: str) -> None:
        real(self, sha256)
        sessions.append(self.session)
        raise Killed

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            monkeypatch.setattr(files_app._Sender, "_finishing", killed)
            with pytest.raises(Killed):
                await send_file(src, "127.0.0.1", port, checkpoint=MIB,
                                state_dir=tmp_path / "state")  # fmt: skip
            sessions[0].abort()
            monkeypatch.setattr(files_app._Sender, "_finishing", real)
            assert not (tmp_path / "files" / "k.bin").exists()
            result = await send_file(src, "127.0.0.1", port, checkpoint=MIB,
                                     state_dir=tmp_path / "state")  # fmt: skip
            assert result.resumed_from == 3 * MIB and result.sent == 17

    run(main())
    assert (tmp_path / "files" / "k.bin").read_bytes() == src.read_bytes()


@pytest.mark.parametrize(("name", "why"), [
    ("a/", "not a file name"),
    ("a//b", "not a file name"),
    (".", "not a file name"),
    ("...", "not a file name"),
    ("sub/..", "outside the served directory"),
    ("", "a file name is required"),
    ("x" * 256, "too long: at most 255 octets"),
    ("d/" + "é" * 128, "too long: at most 255 octets"),
    ("a\nb", "has a control character (U+000A)"),
    ("a\x1b[31mred", "has a control character (U+001B)"),
    ("a\x00b", "has a control character (U+0000)"),
    ("a\x85b", "has a control character (U+0085)"),
    ("\ud800x", "not a name the server's file system takes"),
    # (U+DC80..U+DCFF passed: os.fsencode made them raw octets, "\udc9b" a CSI 0x9B)
    ("a\udc9b[2Jb", "not a name the server's file system takes (not Unicode text: U+DC9B)"),
    ("x\udc80", "not Unicode text: U+DC80"),
    ("gpj\u202eexe", "has a control character (U+202E)"),  # shown as "exe.jpg"
    ("a\u2028b", "has a control character (U+2028)"),  # a line separator
])  # fmt: skip
def test_a_name_the_file_system_does_not_take_is_refused_at_connect(
    tmp_path: Path, name: str, why: str
) -> None:
    """Refused before the accept, with the reason and without the server's path."""

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            request = {"op": "put", "name": name, "size": 10, "mtime": 0}
            with pytest.raises(TransferError, match="the server refused") as info:
                await files_app._connect("127.0.0.1", port, request, None, None, None, None)
            assert why in str(info.value), info.value
            assert str(tmp_path) not in str(info.value)

    run(main())
    assert list((tmp_path / "files").iterdir()) == []


@pytest.mark.parametrize("name", ["y" * 255, "é" * 127, "sub/" + "z" * 250,
                                  "family\U0001f468\u200d\U0001f469.txt"])  # (a ZWJ: allowed)
def test_every_name_the_file_system_takes_arrives(tmp_path: Path, name: str) -> None:
    """The partial file's name (``.NAME.<activity>.part``) is cut short to fit: a final
    name of 237 to 255 octets is not refused halfway through with ENAMETOOLONG."""
    src = tmp_path / "n.bin"
    src.write_bytes(pattern(5, MIB + 3))

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            await send_file(src, "127.0.0.1", port, name=name, checkpoint=MIB // 2,
                            state_dir=tmp_path / "state")  # fmt: skip

    run(main())
    assert (tmp_path / "files" / name).read_bytes() == src.read_bytes()
    assert not [p for p in (tmp_path / "files").rglob(".*") if p.name.endswith(".part")]


@pytest.mark.parametrize("local", ["report\t2024.csv", "line\nbreak.bin", "a\u202eb.bin"])
def test_get_writes_to_the_local_name_the_user_gave(tmp_path: Path, local: str) -> None:
    """The server's checks on names that come from peers are not for the user's own ``-o``:
    a tab in a local name was refused ("has a control character (U+0009)"), and only once
    the session was open, which it left so for the server to hold."""
    served = tmp_path / "files" / "g.bin"
    served.parent.mkdir()
    served.write_bytes(pattern(9, MIB + 5))
    out = tmp_path / "out"
    out.mkdir()

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            await get_file("g.bin", "127.0.0.1", port, output=out / local, checkpoint=MIB,
                           state_dir=tmp_path / "state")  # fmt: skip

    run(main())
    assert (out / local).read_bytes() == served.read_bytes()


def test_a_local_name_get_cannot_write_is_said_before_any_connection(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(TransferError, match=r"cannot write .*x{300}: File name too long"):
            # (port 9, discard: nothing is asked of it, the check comes first)
            await get_file("g.bin", "127.0.0.1", 9, output=tmp_path / ("x" * 300),
                           checkpoint=MIB, state_dir=tmp_path)  # fmt: skip

    run(main())


def test_a_request_nested_too_deep_is_refused_as_an_unknown_operation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer's connect data nested deeper than the decoder goes is no request: refused
    as one (it was the decoder's RecursionError out of the check, an ERROR with its
    traceback in the server's log and "authentication error" to the peer)."""

    async def main() -> None:
        async with file_server(tmp_path) as (_, port):
            with pytest.raises(sessionlayer.ConnectRefused, match="unknown file operation"):
                await sessionlayer.connect("127.0.0.1", port, offers={"service": ["files"]},
                                           data=b"[" * 5000)  # fmt: skip

    with caplog.at_level("WARNING", logger="sessionlayer"):
        run(main())
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.records
