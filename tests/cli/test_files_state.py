"""The client's own state and disk in ``sessionlayer send`` and ``get``: two runs of one
transfer at once, a damaged state, a local write that fails, a state that cannot be kept,
and what ``--json`` counts.  Real processes, real files, a real server."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
from pathlib import Path

import pytest

from .files_helpers import (
    ENV,
    LIMIT,
    MIB,
    Serve,
    cli,
    get,
    make_file,
    result,
    send,
    sha,
    transfer,
)


def one_line(status: int | None, out: str, err: str) -> str:
    """The one line a failed run writes on stderr (status 1, no traceback)."""
    assert status == 1, (status, out, err)
    assert err.count("\n") == 1 and "Traceback" not in out + err, err
    return err


@pytest.mark.parametrize("command", ["send", "get"])
def test_a_second_run_of_a_running_transfer_is_refused_and_a_rerun_after_a_kill_takes_over(
    tmp_path: Path, command: str
) -> None:
    """Both runs would write the same state and the same partial file: the second is
    refused in one line naming the first (its pid); once the first is killed (its lock
    goes with it) a rerun takes the transfer over and resumes it."""
    size = 40 * MIB
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    (tmp_path / "state").mkdir()
    (tmp_path / "out").mkdir()
    src = make_file((tmp_path if command == "send" else files) / "lk.bin", size)
    what = [str(src)] if command == "send" else ["lk.bin"]
    into = [] if command == "send" else ["-o", str(tmp_path / "out")]
    arrived = files / "lk.bin" if command == "send" else tmp_path / "out" / "lk.bin"

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        first = None
        try:
            args = [*what, f"127.0.0.1:{server.port}", *into, "--checkpoint", "4",
                    "--state-dir", str(tmp_path / "state")]  # fmt: skip
            first = await asyncio.create_subprocess_exec(
                *cli(command, *args), env=ENV,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
            assert first.stdout is not None
            async with asyncio.timeout(LIMIT):  # (halfway: then it is stopped, lock held)
                while " (50 %)" not in (line := (await first.stdout.readline()).decode()):
                    assert line, "the first run ended"
            first.send_signal(signal.SIGSTOP)
            err = one_line(*await transfer(command, *args))
            assert "this transfer is already running" in err, err
            assert f"pid {first.pid}: sessionlayer {command} " in err, err
            first.kill()
            await first.wait()
            status, out, err = await transfer(command, *args, "--json")
            assert status == 0, err
            res = result(out)
            assert 0 < res["resumed_from"] < size and res["sent"] < size, res
            assert sha(arrived) == sha(src) == res["sha256"]
        finally:
            if first is not None and first.returncode is None:
                first.kill()
                await first.communicate()
            await server.stop()

    asyncio.run(main())


def test_a_damaged_state_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """A truncated index, an entry of the wrong shape, a truncated download record: one
    line that names the file (it used to be taken as no state at all, and the next save
    wrote away every other transfer's entry; or a KeyError)."""
    src = make_file(tmp_path / "d.bin", 1000)
    state = tmp_path / "state"
    (state / "downloads").mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    index = state / "transfers.json"
    where = "127.0.0.1:1"
    base = ["--state-dir", str(state)]

    async def main() -> None:
        index.write_text('{"127.0.0.1:1|d.bin|')  # (cut short)
        err = one_line(*await send(str(src), where, *base))
        assert f"the transfer state {index} is damaged" in err, err
        index.write_text(json.dumps({f"{where}|d.bin|{src.resolve()}": {"activity": "zz"}}))
        err = one_line(*await send(str(src), where, *base))
        assert f"{index} is damaged (this transfer's entry)" in err and "--restart" in err
        err = one_line(*await send(str(src), where, *base, "--restart"))
        assert "cannot reach 127.0.0.1:1" in err, err  # (past the state: --restart mends it)
        downloads = state / "downloads" / "index.json"
        downloads.write_text("[1, 2")
        err = one_line(*await get("d.bin", where, "-o", str(out), *base))
        assert f"the transfer state {downloads} is damaged" in err, err
        activity = "00112233aabb"
        key = f"{where}|d.bin|{(out / 'd.bin').resolve()}"
        downloads.write_text(json.dumps({key: {"activity": activity, "session": "ab" * 16}}))
        record = state / "downloads" / f"{activity}.json"
        record.write_text('{"activity": "00112233aabb", "name": "d.b')
        err = one_line(*await get("d.bin", where, "-o", str(out), *base))
        assert f"the transfer state {record} is damaged" in err and "--restart" in err, err

    asyncio.run(main())


#: JSON nested deeper than the decoder goes (its RecursionError was "internal error", 70).
DEEP = "[" * 100_000


def test_a_state_nested_too_deep_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """An index (send's, get's) or a download's record nested deeper than the decoder goes
    is damaged like any other that is not JSON: one line naming the file, exit 1."""
    src = make_file(tmp_path / "d.bin", 1000)
    state = tmp_path / "state"
    (state / "downloads").mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    where = "127.0.0.1:1"
    base = ["--state-dir", str(state)]

    async def main() -> None:
        index = state / "transfers.json"
        index.write_text(DEEP)
        err = one_line(*await send(str(src), where, *base))
        assert f"the transfer state {index} is damaged" in err, err
        downloads = state / "downloads" / "index.json"
        downloads.write_text('{"a":' * 100_000)
        err = one_line(*await get("d.bin", where, "-o", str(out), *base))
        assert f"the transfer state {downloads} is damaged" in err, err
        activity = "00112233aabb"
        key = f"{where}|d.bin|{(out / 'd.bin').resolve()}"
        downloads.write_text(json.dumps({key: {"activity": activity, "session": "ab" * 16}}))
        record = state / "downloads" / f"{activity}.json"
        record.write_text(DEEP)
        err = one_line(*await get("d.bin", where, "-o", str(out), *base))
        assert f"the transfer state {record} is damaged" in err and "--restart" in err, err

    asyncio.run(main())


def _file_size_limit() -> None:  # (in the child: writes beyond 10 MiB fail with EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10 * MIB, resource.RLIM_INFINITY))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_get_whose_local_write_fails_says_so_and_a_rerun_resumes(tmp_path: Path) -> None:
    """The file cannot grow beyond 10 MiB here (RLIMIT_FSIZE: EFBIG, as a full disk's
    ENOSPC would be): the line says it was this side's write, names the partial file and
    the errno's text, and does not blame the server (it said "cannot write 'NAME' on the
    server"); the partial file and the checkpoint at 8 MiB are kept, so a rerun without
    the limit goes on from there."""
    size = 24 * MIB
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    src = make_file(files / "big.bin", size)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "state").mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            args = ["big.bin", f"127.0.0.1:{server.port}", "-o", str(out), "--checkpoint",
                    "4", "--state-dir", str(tmp_path / "state")]  # fmt: skip
            err = one_line(*await transfer("get", *args, preexec=_file_size_limit))
            (part,) = out.glob(".big.bin.*.part")
            assert f"cannot write {part}: File too large (a local write error" in err, err
            assert "server" not in err, err
            assert not (out / "big.bin").exists()
            status, stdout, err = await get(*args, "--json")
            assert status == 0, err
            res = result(stdout)
            assert res["resumed_from"] == 8 * MIB and res["sent"] == size - 8 * MIB, res
            assert sha(out / "big.bin") == sha(src) == res["sha256"]
        finally:
            await server.stop()
        assert "Traceback" not in server.err.decode()

    asyncio.run(main())


def test_a_send_whose_state_cannot_be_kept_aborts_its_session(tmp_path: Path) -> None:
    """The state file cannot be written (its temporary name is taken by a directory: what
    a read-only state directory would be for a user who is not root): the send fails in one
    line naming it, and the server sees the session aborted, not a lost connection whose
    session waits for a resume that would never come."""
    src = make_file(tmp_path / "st.bin", 3 * MIB)
    state = tmp_path / "state"
    (state / "transfers.json.tmp").mkdir(parents=True)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            err = one_line(*await send(str(src), f"127.0.0.1:{server.port}", "--checkpoint",
                                       "1", "--state-dir", str(state)))  # fmt: skip
            assert f"cannot keep the transfer state {state / 'transfers.json'}: Is a" in err
            assert server.proc is not None and server.proc.stderr is not None
            async with asyncio.timeout(LIMIT):  # (the session's last line, as it comes)
                while True:
                    line = (await server.proc.stderr.readline()).decode()
                    assert line, "the server ended"
                    if "ended:" in line or "interrupted" in line:
                        break
            assert "ended: aborted by the peer" in line, line
        finally:
            await server.stop()

    asyncio.run(main())


def test_json_checkpoints_count_this_run_for_send_and_get(tmp_path: Path) -> None:
    """``checkpoints`` is those of this run (as ``sent`` is its octets), for ``send`` and
    for ``get`` alike (a get's used to count the whole transfer's): a rerun from offset O
    of a 40 MiB file with a checkpoint every 4 MiB has (40 MiB - O) / 4 MiB of them, the
    whole file's last one included."""
    size = 40 * MIB
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    src = make_file(tmp_path / "cp.bin", size)
    make_file(files / "cpg.bin", size)
    (tmp_path / "state").mkdir()
    out = tmp_path / "out"
    out.mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            common = ["--checkpoint", "4", "--state-dir", str(tmp_path / "state")]
            where = f"127.0.0.1:{server.port}"
            for command, what in [("send", [str(src), where]),
                                  ("get", ["cpg.bin", where, "-o", str(out)])]:
                status, _, _ = await transfer(command, *what, *common, kill_after=size // 2)
                assert status == -9
                status, stdout, err = await transfer(command, *what, *common, "--json")
                assert status == 0, err
                res = result(stdout)
                assert res["resumed_from"] > 0, res
                assert res["checkpoints"] == (size - res["resumed_from"]) // (4 * MIB), res
        finally:
            await server.stop()

    asyncio.run(main())
