"""Issue 10's file transfer, run as the user runs it: ``sessionlayer serve`` and
``sessionlayer send`` in processes of their own.  Cuts, a killed client that resumes from
its last checkpoint, a killed and restarted server, and every refusal in one clear line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.faults.proxy import FaultProxy
from tests.tools import unavailable

from .files_helpers import ENV, LIMIT, MIB, Serve, cli, get, make_file, result, send, sha

PIPE = asyncio.subprocess.PIPE


def state_dir(tmp_path: Path) -> str:
    """``--state-dir``: ``tmp_path/state``, made (it must exist)."""
    (tmp_path / "state").mkdir(exist_ok=True)
    return str(tmp_path / "state")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 120))


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def test_a_file_arrives_whole_and_verified(tmp_path: Path) -> None:
    src = make_file(tmp_path / "a.bin", 5 * MIB + 123)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            status, out, err = await send(str(src), f"127.0.0.1:{server.port}", "--json",
                                          "--checkpoint", "1", "--state-dir", str(tmp_path))
            assert status == 0, err
            res = result(out)
            assert res["size"] == res["sent"] == src.stat().st_size
            assert res["checkpoints"] == 6  # (one a MiB, then the whole file's)
            assert res["sha256"] == sha(src) == sha(tmp_path / "srv" / "files" / "a.bin")
            assert not list((tmp_path / "srv" / "files").glob(".*part"))  # no partial file
            no_traceback(out, err)
            # The same file fetched back counts its checkpoints the same way.
            (tmp_path / "back").mkdir()
            status, out, err = await get("a.bin", f"127.0.0.1:{server.port}", "--json",
                                         "--checkpoint", "1", "--state-dir", str(tmp_path),
                                         "-o", str(tmp_path / "back"))  # fmt: skip
            assert status == 0, err
            assert result(out)["checkpoints"] == 6
            assert sha(tmp_path / "back" / "a.bin") == sha(src)
        finally:
            await server.stop()

    run(main())


def test_a_transfer_survives_cuts(tmp_path: Path) -> None:
    src = make_file(tmp_path / "c.bin", 24 * MIB)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            async with FaultProxy("127.0.0.1", server.port, seed=7) as proxy:
                proxy.schedule(cut_after_bytes=(200_000, 3_000_000), modes=("reset",),
                               max_cuts=6)  # fmt: skip
                status, out, err = await send(str(src), f"127.0.0.1:{proxy.port}", "--json",
                                              "--checkpoint", "2", "--state-dir", str(tmp_path))
                assert status == 0, err
                res = result(out)
                assert res["reconnects"] >= 3, res
                assert proxy.cuts >= 3
                await server.stop()
                assert sha(tmp_path / "srv" / "files" / "c.bin") == sha(src), server.err
                no_traceback(out, err)
        finally:
            await server.stop()

    run(main())


def test_a_killed_client_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    size = 40 * MIB
    src = make_file(tmp_path / "k.bin", size)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            state = ["--state-dir", state_dir(tmp_path), "--checkpoint", "4"]
            status, _, _ = await send(str(src), f"127.0.0.1:{server.port}", *state,
                                      kill_after=size // 2)  # fmt: skip
            assert status == -9
            status, out, err = await send(str(src), f"127.0.0.1:{server.port}", "--json", *state)
            assert status == 0, err
            res = result(out)
            assert res["resumed_from"] > 0 and res["sent"] < size  # it did not start over
            assert res["resumed_from"] + res["sent"] == size
            assert sha(tmp_path / "srv" / "files" / "k.bin") == sha(src)
            no_traceback(out, err)
        finally:
            await server.stop()

    run(main())


def test_a_changed_source_is_refused_on_the_rerun(tmp_path: Path) -> None:
    size = 40 * MIB
    src = make_file(tmp_path / "s.bin", size)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            state = ["--state-dir", state_dir(tmp_path), "--checkpoint", "4"]
            await send(str(src), f"127.0.0.1:{server.port}", *state, kill_after=size // 2)
            make_file(src, size, seed=2)  # same size, other content, new mtime
            status, out, err = await send(str(src), f"127.0.0.1:{server.port}", *state)
            assert status == 1
            assert "changed since the interrupted transfer" in err and "--restart" in err
            assert err.count("\n") == 1
            no_traceback(out, err)
            status, out, err = await send(str(src), f"127.0.0.1:{server.port}", "--restart",
                                          *state)  # fmt: skip
            assert status == 0, err
            assert sha(tmp_path / "srv" / "files" / "s.bin") == sha(src)
        finally:
            await server.stop()

    run(main())


def _spoil(part: Path) -> None:
    """One octet of what a receiver kept changed (a disk's error, a hand that edited it)."""
    with open(part, "r+b") as f:
        f.seek(1000)
        octet = f.read(1)
        f.seek(1000)
        f.write(bytes([octet[0] ^ 0xFF]))


def test_a_spoiled_partial_file_is_refused_in_one_line_and_restart_mends_it(
    tmp_path: Path,
) -> None:
    """What a receiver kept is hashed again (off its loop) before it takes more: a kept
    prefix that no longer hashes to its checkpoint ends the rerun with one line that says
    what to do, on both sides (the server receiving a send, the client receiving a get)."""
    size = 40 * MIB
    src = make_file(tmp_path / "p.bin", size)
    files = tmp_path / "srv" / "files"
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    async def spoiled_rerun(command: Any, args: list[str], parts: Path, done: Path,
                            states: Path) -> None:  # fmt: skip
        """Killed halfway, what was kept spoiled, rerun (refused in one line), --restart
        (which removes what it replaced: the partial file, and its state in ``states``)."""
        status, _, _ = await command(*args, kill_after=size // 2)
        assert status == -9
        (part,) = parts.glob(".p.bin.*.part")
        _spoil(part)
        status, out, err = await command(*args)
        assert status == 1, err
        assert "does not match its checkpoint" in err and "--restart" in err, err
        assert err.count("\n") == 1, err
        no_traceback(out, err)
        status, out, err = await command(*args, "--restart")
        assert status == 0, err
        assert sha(done) == sha(src)
        assert not list(parts.glob(".p.bin.*.part")), list(parts.iterdir())
        left = [p.name for p in states.glob("*.json") if p.name != "index.json"]
        assert not left, left

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            state = ["--state-dir", state_dir(tmp_path), "--checkpoint", "4"]
            where = f"127.0.0.1:{server.port}"
            await spoiled_rerun(send, [str(src), where, *state], files, files / "p.bin",
                                tmp_path / "srv" / "transfers")  # fmt: skip
            await spoiled_rerun(get, ["p.bin", where, "-o", str(out_dir), *state], out_dir,
                                out_dir / "p.bin", tmp_path / "state" / "downloads")
        finally:
            await server.stop()
        no_traceback(server.err.decode())
        assert "never retrieved" not in server.err.decode()

    run(main())

async def sending(src: Path, port: int, state: Path, percent: int) -> Any:
    """``sessionlayer send SRC`` (checkpoints every 4 MiB) running, once its progress says
    ``percent`` % (a multiple of 10): the process, its stdout and stderr piped."""
    state.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        *cli("send", str(src), f"127.0.0.1:{port}", "--checkpoint", "4", "--state-dir",
             str(state)), env=ENV, stdout=PIPE, stderr=PIPE)  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(LIMIT):
        while f"({percent} %)".encode() not in await proc.stdout.readline():
            pass
    return proc


def test_a_killed_and_restarted_server_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    size = 60 * MIB
    src = make_file(tmp_path / "r.bin", size)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        again = None
        try:
            proc = await sending(src, server.port, tmp_path / "state", 30)
            server.kill()
            await server.proc.wait()  # type: ignore[union-attr]
            again = await Serve(tmp_path / "srv", port=server.port).start()
            async with asyncio.timeout(LIMIT):
                out, err = await proc.communicate()
            assert proc.returncode == 0, err
            assert b"1 restores" in out, out
            assert sha(tmp_path / "srv" / "files" / "r.bin") == sha(src)
            no_traceback(out.decode(), err.decode())
        finally:
            server.kill()
            if again is not None:
                await again.stop()

    run(main())


async def stopped(pid: int) -> None:
    """Until process ``pid`` is stopped (SIGSTOP): its state in /proc is T."""
    async with asyncio.timeout(LIMIT):
        while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
            await asyncio.sleep(0.001)


def test_a_source_rewritten_during_the_send_fails_in_one_line(tmp_path: Path) -> None:
    """Same size, new octets, in place: not reported 'verified by the server' (what was
    sent mixes old and new, and its SHA-256 is of what was sent), but an error that says
    what to do; the file never gets its name on the server."""
    size = 200 * MIB  # (the sender is stopped at 10 %: the rest is still to come then)
    src = make_file(tmp_path / "w.bin", size)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        proc = None
        try:
            proc = await sending(src, server.port, tmp_path / "state", 10)
            proc.send_signal(signal.SIGSTOP)
            try:
                await stopped(proc.pid)  # (the signal is not taken at once on another core)
                before = src.stat()
                new = make_file(tmp_path / "new.bin", size, seed=2)
                with open(src, "r+b") as f, open(new, "rb") as g:  # in place: same inode,
                    shutil.copyfileobj(g, f)  # never shorter
                os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
            finally:
                proc.send_signal(signal.SIGCONT)
            async with asyncio.timeout(LIMIT):
                out, err = await proc.communicate()
            assert proc.returncode == 1, (out, err)
            text = err.decode()
            assert "w.bin changed while it was sent" in text and "--restart" in text, text
            assert text.count("\n") == 1 and b"verified" not in out, (out, err)
            no_traceback(out.decode(), text)
            assert not (tmp_path / "srv" / "files" / "w.bin").exists()
        finally:
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.communicate()
            await server.stop()
        no_traceback(server.err.decode())

    run(main())


@pytest.mark.parametrize(("name", "why"), [
    ("../escape.bin", "outside the served directory"),
    ("/etc/escape.bin", "outside the served directory"),
    ("link/escape.bin", "outside the served directory"),
    ("a/", "not a file name"),  # (it made the file 'a')
    ("x" * 256, "too long"),
])
def test_a_name_that_escapes_the_files_directory_is_refused(tmp_path: Path, name: str,
                                                            why: str) -> None:
    src = make_file(tmp_path / "n.bin", 1000)
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    (files / "link").symlink_to(tmp_path)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            status, out, err = await send(str(src), f"127.0.0.1:{server.port}", "--name", name,
                                          "--state-dir", str(tmp_path))
            assert status == 1 and why in err and err.count("\n") == 1, err
            assert str(tmp_path) not in err  # (no server path)
            assert not (tmp_path / "escape.bin").exists() and not (files / "a").exists()
            no_traceback(out, err)
        finally:
            await server.stop()

    run(main())


def test_bad_credentials_and_a_missing_server_and_file_get_one_line(tmp_path: Path) -> None:
    src = make_file(tmp_path / "p.bin", 1000)
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ada": "s3cret"}))

    async def main() -> None:
        server = await Serve(tmp_path / "srv", "--auth", str(users)).start()
        try:
            base = [f"127.0.0.1:{server.port}", "--state-dir", str(tmp_path)]
            ENV["SESSIONLAYER_PASSWORD"] = "wrong"  # (what the command's process gets)
            try:
                status, out, err = await send(str(src), *base, "--user", "ada")
            finally:
                del ENV["SESSIONLAYER_PASSWORD"]
            assert status == 1 and "refused" in err and "authentication" in err, err
            no_traceback(out, err)
            # no password at all: said at start, not the server's "authentication failed"
            status, out, err = await send(str(src), *base, "--user", "ada")
            assert status == 1 and "$SESSIONLAYER_PASSWORD, which is not set" in err, err
            assert err.count("\n") == 1
            status, out, err = await send(str(tmp_path / "missing.bin"), *base)
            assert status == 1 and "cannot read" in err and err.count("\n") == 1, err
        finally:
            await server.stop()
        status, out, err = await send(str(src), f"127.0.0.1:{server.port}", "--state-dir",
                                      str(tmp_path))  # fmt: skip
        assert status == 1 and "cannot reach" in err and err.count("\n") == 1, err
        no_traceback(out, err)

    run(main())


def test_a_full_disk_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    files = tmp_path / "small"
    files.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(files)], check=True)
    try:
        src = make_file(tmp_path / "big.bin", 8 * MIB)

        async def main() -> None:
            server = await Serve(tmp_path / "srv", "--files", str(files)).start()
            try:
                status, out, err = await send(str(src), f"127.0.0.1:{server.port}",
                                              "--state-dir", str(tmp_path))  # fmt: skip
                assert status == 1 and "not enough space" in err, err
                no_traceback(out, err)
            finally:
                await server.stop()

        run(main())
    finally:
        subprocess.run(["umount", str(files)], check=False)


def test_status_json_during_a_transfer(tmp_path: Path) -> None:
    size = 200 * MIB
    src = make_file(tmp_path / "st.bin", size)

    async def main() -> None:
        server = await Serve(tmp_path / "srv", "--admin", "127.0.0.1:0").start()
        proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *cli("send", str(src), f"127.0.0.1:{server.port}", "--checkpoint", "4",
                     "--state-dir", str(tmp_path)),
                env=ENV, stdout=PIPE, stderr=PIPE)  # fmt: skip
            assert proc.stdout is not None
            async with asyncio.timeout(LIMIT):
                while b"(10 %)" not in await proc.stdout.readline():
                    pass
            # The sender is stopped while status runs, so that the transfer is still under
            # way then however fast this host moves 200 MiB (it had ended, on a quick run).
            proc.send_signal(signal.SIGSTOP)
            rows: list[dict[str, object]] = []
            try:
                async with asyncio.timeout(LIMIT):
                    while not rows:  # (the server's side may lag the client's progress)
                        status = await asyncio.create_subprocess_exec(
                            *cli("status", f"127.0.0.1:{server.admin_port}", "--json"),
                            env=ENV, stdout=PIPE, stderr=PIPE)  # fmt: skip
                        out, err = await status.communicate()
                        assert status.returncode == 0, err
                        data = json.loads(out)
                        rows = [s for s in data["sessions"] if s["activity"] and s["progress"]]
            finally:
                proc.send_signal(signal.SIGCONT)
            [row] = rows
            assert row["state"].startswith("STA") and row["bytes_in"] > 0
            assert row["progress"]["name"] == "st.bin" and row["progress"]["size"] == size
            await asyncio.wait_for(proc.communicate(), LIMIT)
            assert proc.returncode == 0
            with urllib.request.urlopen(f"http://127.0.0.1:{server.admin_port}/metrics") as r:
                assert b"sessionlayer_sessions_accepted_total" in r.read()
        finally:
            if proc is not None and proc.returncode is None:  # (a failure: not left running)
                proc.kill()
                await proc.communicate()
            await server.stop()

    run(main())


def test_get_fetches_resumes_after_a_kill_and_refuses_unknown_names(tmp_path: Path) -> None:
    size = 40 * MIB
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    src = make_file(files / "g.bin", size)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            base = [f"127.0.0.1:{server.port}", "-o", str(out_dir), "--checkpoint", "4",
                    "--state-dir", state_dir(tmp_path)]  # fmt: skip
            status, _, _ = await get("g.bin", *base, kill_after=size // 2)
            assert status == -9
            assert not (out_dir / "g.bin").exists()  # never a partial file under its name
            status, out, err = await get("g.bin", *base, "--json")
            assert status == 0, err
            res = result(out)
            assert res["resumed_from"] > 0 and res["sent"] < size
            assert sha(out_dir / "g.bin") == sha(src) == res["sha256"]
            status, out, err = await get("nope.bin", *base)
            assert status == 1 and "no file 'nope.bin'" in err and err.count("\n") == 1, err
            status, out, err = await get("../etc/passwd", *base)
            assert status == 1 and "outside the served directory" in err, err
            no_traceback(out, err)
        finally:
            await server.stop()

    run(main())


def test_tls_a_failed_handshake_and_status_once(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    src = make_file(tmp_path / "t.bin", 3 * MIB)
    pem = str(tmp_path / "server.pem")

    async def main() -> None:
        server = await Serve(tmp_path / "srv", "--tls-cert", pem, "--tls-key", pem,
                             "--admin", "127.0.0.1:0").start()  # fmt: skip
        try:
            base = [f"127.0.0.1:{server.port}", "--state-dir", str(tmp_path), "--tls"]
            status, out, err = await send(str(src), *base)  # the CA is not trusted
            assert status == 1 and "TLS" in err and err.count("\n") == 1, err
            no_traceback(out, err)
            status, out, err = await send(str(src), *base, "--ca", str(tmp_path / "ca.pem"))
            assert status == 0, err
            assert sha(tmp_path / "srv" / "files" / "t.bin") == sha(src)
            proc = await asyncio.create_subprocess_exec(
                *cli("status", f"127.0.0.1:{server.admin_port}", "--once"), env=ENV,
                stdout=PIPE, stderr=PIPE)  # fmt: skip
            table, err2 = await proc.communicate()
            assert proc.returncode == 0, err2
            assert b"sessions" in table and b"checkpoint" in table
        finally:
            await server.stop()

    run(main())


def test_an_empty_file_goes_both_ways_and_odd_sources_are_refused(tmp_path: Path) -> None:
    """An empty file is stored under its name (its last checkpoint is where it started);
    a name that is a directory on the server is refused at connect; a file whose size is
    not what it holds (/proc) is refused, never sent as 0 octets."""
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            where = f"127.0.0.1:{server.port}"
            state = ["--state-dir", state_dir(tmp_path)]
            status, out, err = await send(str(empty), where, *state)
            assert status == 0, err
            stored = tmp_path / "srv" / "files" / "empty.bin"
            assert stored.is_file() and stored.stat().st_size == 0
            assert not list(stored.parent.glob(".*part"))
            status, out, err = await get("empty.bin", where, "-o", str(out_dir), *state)
            assert status == 0, err
            assert (out_dir / "empty.bin").read_bytes() == b""
            assert not list(out_dir.glob(".*part"))
            (tmp_path / "srv" / "files" / "sub").mkdir()
            status, out, err = await send(str(empty), where, "--name", "sub", *state)
            assert status == 1 and "'sub' cannot be written on the server" in err, err
            status, out, err = await send("/proc/self/status", where, *state)
            assert status == 1 and "grew while it was sent" in err, err
            no_traceback(out, err)
        finally:
            await server.stop()
        no_traceback(server.err.decode())

    run(main())


def test_get_refuses_a_path_that_is_not_a_regular_file(tmp_path: Path) -> None:
    """``get -o PATH`` onto a FIFO (PATH itself, or NAME in the directory PATH), a symbolic
    link to one or to nothing: refused at start in one line, exit 1, before anything is
    transferred or written (it used to replace the FIFO with the file and exit 0); and a
    path that became a FIFO during the transfer is refused at its end, never replaced."""
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    make_file(files / "g.bin", MIB)
    make_file(files / "big.bin", 64 * MIB)
    out, other = tmp_path / "out", tmp_path / "other"
    out.mkdir()
    other.mkdir()
    os.mkfifo(out / "fifo")
    os.mkfifo(other / "g.bin")
    (out / "link").symlink_to(out / "fifo")
    (out / "dangling").symlink_to(out / "none")
    before = {p: sorted(os.listdir(p)) for p in (out, other)}

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            base = [f"127.0.0.1:{server.port}", "--state-dir", str(tmp_path)]
            for target, needle in [(out / "fifo", "not a regular file"),
                                   (other, f"{other / 'g.bin'}: not a regular file"),
                                   (out / "link", "not a regular file"),
                                   (out / "dangling", "a symbolic link to nothing")]:
                status, text, err = await get("g.bin", *base, "-o", str(target))
                assert status == 1 and needle in err and err.count("\n") == 1, (target, err)
                no_traceback(text, err)
            assert {p: sorted(os.listdir(p)) for p in (out, other)} == before
            # made a FIFO while the transfer runs (its process stopped meanwhile): the end
            # finds it and refuses, the FIFO stays
            proc = await asyncio.create_subprocess_exec(
                *cli("get", "big.bin", *base, "-o", str(out), "--checkpoint", "16"),
                env=ENV, stdout=PIPE, stderr=PIPE)  # fmt: skip
            assert proc.stdout is not None
            try:
                async with asyncio.timeout(LIMIT):
                    while b"(10 %)" not in await proc.stdout.readline():
                        pass
                proc.send_signal(signal.SIGSTOP)
                try:
                    await stopped(proc.pid)
                    os.mkfifo(out / "big.bin")
                finally:
                    proc.send_signal(signal.SIGCONT)
                async with asyncio.timeout(LIMIT):
                    text, err = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.communicate()
            assert proc.returncode == 1, (text, err)
            said = err.decode()
            assert f"{out / 'big.bin'}: not a regular file now" in said, said
            assert said.count("\n") == 1, said
            no_traceback(text.decode(), said)
        finally:
            await server.stop()
        assert (out / "fifo").is_fifo() and (other / "g.bin").is_fifo()
        assert (out / "big.bin").is_fifo()
        no_traceback(server.err.decode())

    run(main())


def test_a_get_through_a_server_restart_counts_its_restore_and_what_came_again(
    tmp_path: Path,
) -> None:
    """The server killed (-9) mid-get and started again resumes the transfer from its last
    checkpoint: ``get --json`` says so (``restores`` 1) and counts the octets that came
    again in ``sent``, as ``send`` does (it said 0 restores and the file's size)."""
    size = 60 * MIB
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    src = make_file(files / "rg.bin", size)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        again = None
        try:
            async with FaultProxy("127.0.0.1", server.port, seed=3) as proxy:
                # the link goes silent past the checkpoint at 16 MiB (not on one): the
                # server is killed while it is, and started again before it heals
                proxy.schedule(cut_after_bytes=(18 * MIB + 12345,) * 2, modes=("blackhole",),
                               max_cuts=1)  # fmt: skip
                getting = asyncio.ensure_future(get(
                    "rg.bin", f"127.0.0.1:{proxy.port}", "-o", str(out_dir), "--json",
                    "--checkpoint", "4", "--state-dir", str(tmp_path)))  # fmt: skip
                await proxy.wait_cuts(1, LIMIT)
                server.kill()
                await server.proc.wait()  # type: ignore[union-attr]
                again = await Serve(tmp_path / "srv", port=server.port).start()
                proxy.heal()
                status, out, err = await getting
            assert status == 0, err
            res = result(out)
            assert res["restores"] == 1 and res["resumed_from"] == 0, res
            # (what came after the checkpoint the server went back to came twice)
            assert size < res["sent"] < size + 18 * MIB, res
            assert sha(out_dir / "rg.bin") == sha(src) == res["sha256"]
            no_traceback(out, err)
        finally:
            server.kill()
            if again is not None:
                await again.stop()
        assert "resumed from checkpoint" in again.err.decode(), again.err

    run(main())


def test_the_state_is_kept_in_the_state_dir_itself_which_must_exist(tmp_path: Path) -> None:
    """``--state-dir DIR`` keeps the state in DIR (DIR/transfers.json, DIR/downloads/), and
    DIR must exist: one line, exit 1, nothing made (it used to make DIR/sessionlayer/ and
    every missing parent).  A state an older version left in DIR/sessionlayer/ is still
    read while DIR holds none: its interrupted transfer resumes."""
    size = 40 * MIB
    src = make_file(tmp_path / "sd.bin", size)
    state, fresh = tmp_path / "st", tmp_path / "fresh"
    state.mkdir()
    fresh.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    async def main() -> None:
        for command, args in [(send, [str(src), "127.0.0.1:1"]),
                              (get, ["sd.bin", "127.0.0.1:1", "-o", str(out_dir)])]:
            for bad, why in [(tmp_path / "none" / "deep", "no such directory"),
                             (src, "not a directory")]:
                status, out, err = await command(*args, "--state-dir", str(bad))
                assert status == 1 and f"--state-dir {bad}: {why}" in err, err
                assert err.count("\n") == 1, err
                no_traceback(out, err)
        assert not (tmp_path / "none").exists()
        server = await Serve(tmp_path / "srv").start()
        try:
            where = f"127.0.0.1:{server.port}"
            args = [str(src), where, "--checkpoint", "4", "--state-dir", str(state)]
            status, _, _ = await send(*args, kill_after=size // 2)
            assert status == -9
            assert json.loads((state / "transfers.json").read_text())  # (its entry)
            assert not (state / "sessionlayer").exists()
            (state / "sessionlayer").mkdir()  # where an older version kept it
            os.replace(state / "transfers.json", state / "sessionlayer" / "transfers.json")
            status, out, err = await send(*args, "--json")
            assert status == 0, err
            assert result(out)["resumed_from"] > 0, out  # (it read the old place)
            assert sha(tmp_path / "srv" / "files" / "sd.bin") == sha(src)
            status, out, err = await get("sd.bin", where, "-o", str(out_dir), "--state-dir",
                                         str(fresh))  # fmt: skip
            assert status == 0, err
            assert (fresh / "downloads").is_dir() and not (fresh / "sessionlayer").exists()
            assert sha(out_dir / "sd.bin") == sha(src)
        finally:
            await server.stop()

    run(main())


def test_get_into_a_directory_it_cannot_write_names_the_path(tmp_path: Path) -> None:
    """``get -o /proc/``: the file cannot be made there; the line names where (it was
    "cannot take the transfer: No such file or directory")."""
    files = tmp_path / "srv" / "files"
    files.mkdir(parents=True)
    make_file(files / "small.txt", 1000)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            status, out, err = await get("small.txt", f"127.0.0.1:{server.port}", "-o",
                                         "/proc/", "--state-dir", str(tmp_path))  # fmt: skip
            assert status == 1 and "cannot write /proc/.small.txt." in err, err
            assert "No such file or directory" in err and err.count("\n") == 1, err
            no_traceback(out, err)
        finally:
            await server.stop()

    run(main())
