"""``sessionlayer relay`` from the command line: a user's mistakes end in one line and exit
status 1, as for the other subcommands (never a traceback); the rules work end to end;
--admin serves the sessions that ``sessionlayer status`` shows; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import queue
import signal
import socket
import threading
from pathlib import Path

import pytest
from tests.hostile import harness as H
from tests.relay.cliproc import RelayProcess
from tests.relay.helpers import run

import sessionlayer
from sessionlayer import ConnectRefused, Options, RefuseReason, SessionConfig
from sessionlayer.capture import read_tcp_streams
from sessionlayer.cli import main

PLAIN = Options(keepalive_interval=None, idle_timeout=None, resume=False)


def cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["relay", *args], stdout=out, stderr=err)
    return code, err.getvalue()


@pytest.fixture
def busy_port() -> object:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


UP = ("--upstream", "127.0.0.1:102")


@pytest.mark.parametrize(("args", "message"), [
    (("--listen", "no such host", *UP), "expected HOST:PORT"),
    (("--listen", "127.0.0.1:99999", *UP), "not a port: '99999'"),
    (("--listen", "::1:102", *UP), "[ADDRESS]:PORT"),
    (("--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:0"), "not a port: '0'"),
])  # fmt: skip
def test_a_malformed_address_is_a_usage_mistake_exit_2(args: tuple[str, ...],
                                                        message: str) -> None:  # fmt: skip
    code, err = cli(*args)
    assert code == 2, err
    assert err.startswith("sessionlayer relay: "), err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(("args", "message"), [
    (("--allow", "peer=nowhere"), "--allow 'peer=nowhere': peer='nowhere': not an IP"),
    (("--deny", "called=xyz"), "hex octets"),
    (("--max-sessions", "0"), "--max-sessions: not a count of at least 1: '0'"),
    (("--max-size", "-3"), "--max-size"),
    (("--handshake-timeout", "0"), "--handshake-timeout"),
    # inf used to pass, then fail every connection unseen (Options refused it at accept)
    (("--handshake-timeout", "inf"), "--handshake-timeout: not a positive number"),
    (("--release-timeout", "nan"), "--release-timeout"),
    (("--idle-timeout", "-1"), "--idle-timeout"),
    (("--allow", "called=0001,"), "--allow 'called=0001,': an empty entry"),
    (("--deny", "peer=10.0.0.0/8,,called=0001"), "--deny 'peer=10.0.0.0/8,,called=0001': an empty"),
])  # fmt: skip
def test_a_bad_option_value_is_a_usage_mistake_exit_2(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:  # (argparse's own: the usage, then one line)
        main(["relay", "--listen", "127.0.0.1:0", *UP, *args])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    last = err.splitlines()[-1]
    assert last.startswith("sessionlayer relay: error: "), err
    assert message in last and "Traceback" not in err, err


def test_relay_options_refuse_what_the_legs_agents_would() -> None:
    """A value the agents' Options refuse is refused when the RelayOptions is made, not
    by failing each connection as asyncio makes it (dropped without a word)."""
    from sessionlayer.relay import RelayOptions

    for bad in ({"handshake_timeout": math.inf}, {"idle_timeout": math.nan},
                {"connect_timeout": -1.0}, {"tpdu_size": 100}):  # fmt: skip
        with pytest.raises(ValueError):
            RelayOptions(**bad)  # type: ignore[arg-type]
    assert RelayOptions(idle_timeout=None).idle_timeout is None


@pytest.mark.parametrize(("args", "message"), [
    (("--max-size", "10"), "argument --max-size: at least 64 octets, not 10"),
    (("--deny", "peer=10.0.0.0/8,peer=::1"), "peer= twice"),
])  # fmt: skip
def test_a_bad_limit_or_rule_is_a_usage_mistake(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-size 10 was exit status 1 and "max-size must be at least 64, not 10"."""
    with pytest.raises(SystemExit) as info:
        main(["relay", "--listen", "127.0.0.1:0", *UP, *args])
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (("--listen", "nowhere.invalid:0", *UP), "cannot listen on nowhere.invalid:0"),
    (("--listen", "127.0.0.1:0", *UP, "--tls-cert", "/nowhere/cert.pem", "--tls-key",
      "/nowhere/key.pem"), "no such file"),
    (("--listen", "127.0.0.1:0", *UP, "--tls-cert", "x.pem"), "go together"),
    (("--listen", "127.0.0.1:0", *UP, "--client-ca", "ca.pem"), "--client-ca needs"),
    (("--listen", "127.0.0.1:0", *UP, "--upstream-ca", "ca.pem"), "needs --upstream-tls"),
    (("--listen", "127.0.0.1:0", *UP, "--upstream-cert", "c.pem", "--upstream-key", "k.pem"),
     "--upstream-cert and --upstream-key need --upstream-tls"),
    (("--listen", "127.0.0.1:0", *UP, "--upstream-tls", "--upstream-cert", "c.pem"),
     "--upstream-cert and --upstream-key go together"),
    (("--listen", "127.0.0.1:0", *UP, "--log", "/nowhere/log"), "--log /nowhere/log"),
    (("--listen", "127.0.0.1:0", *UP, "--pcap", "/nowhere/x.pcap"), "--pcap"),
])  # fmt: skip
def test_mistakes_are_one_line_and_exit_1(args: tuple[str, ...], message: str) -> None:
    code, err = cli(*args)
    assert code == 1, err
    assert err.startswith("sessionlayer relay: "), err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_port_in_use(busy_port: int) -> None:
    code, err = cli("--listen", f"127.0.0.1:{busy_port}", *UP)
    assert code == 1 and "the port is in use" in err, err


def test_an_admin_port_in_use_is_one_line_and_it_never_said_it_listens(busy_port: int) -> None:
    """It said "listening on ..." first, then "cannot serve --admin" and exit 1: a script
    waiting for that line took it for started."""
    code, err = cli("--listen", "127.0.0.1:0", *UP, "--admin", f"127.0.0.1:{busy_port}")
    assert code == 1, err
    assert err.startswith("sessionlayer relay: cannot serve --admin on 127.0.0.1:"), err
    assert err.count("\n") == 1 and "listening" not in err, err


def test_a_key_that_is_not_a_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    code, err = cli("--listen", "127.0.0.1:0", *UP, "--tls-cert", str(bad),
                    "--tls-key", str(bad))  # fmt: skip
    assert code == 1 and "--tls-cert" in err and "--tls-key" in err, err


async def _upstream_and(check: object) -> None:
    async def echo(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data)

    async with await sessionlayer.serve(echo, config=SessionConfig.kernel_duplex(),
                                        options=PLAIN, accept_data=lambda r: b"ok") as up:
        await check(up.port)  # type: ignore[operator]


def _connect(port: int, called: bytes) -> object:
    return sessionlayer.connect("127.0.0.1", port, user_data=b"x", options=PLAIN,
                                config=SessionConfig.kernel_duplex(called_ssel=called))


def test_rules_on_selectors_and_addresses(tmp_path: Path) -> None:
    async def check(upstream: int) -> None:
        with RelayProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream}",
                          "--allow", "called=0002", "--deny", "peer=0.0.0.0/0") as relay:
            async with await _connect(relay.port, b"\x00\x02") as session:  # type: ignore[attr-defined]
                await session.send(b"allowed")
                assert await asyncio.wait_for(session.receive(), 5) == b"allowed"
            with pytest.raises(ConnectRefused) as info:
                await _connect(relay.port, b"\x00\x01")  # type: ignore[misc]
            assert info.value.reason == RefuseReason.SSEL_UNKNOWN
            code, _, err = await asyncio.to_thread(relay.stop)
            assert code == 0 and "Traceback" not in err, err
        with RelayProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream}",
                          "--deny", "peer=127.0.0.0/8") as relay:
            out = await H.attack(relay.port, H.cr(), timeout=3)
            assert out.closed and not out.connected, out  # closed before any COTP
            code, _, err = await asyncio.to_thread(relay.stop)
            assert code == 0, err

    run(_upstream_and(check), 60)


def test_upstream_tls_toward_a_plain_upstream_says_why_and_counts_it_refused() -> None:
    """It logged 'refused: upstream: ConnectionResetError (RF 0x82)', and then
    'stopped (1 sessions relayed)' for the session that never was."""

    async def check(upstream: int) -> None:
        with RelayProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream}",
                          "--upstream-tls") as relay:
            with pytest.raises(ConnectRefused) as info:
                await _connect(relay.port, b"")  # type: ignore[misc]
            assert info.value.reason == RefuseReason.USER_NOT_ATTACHED
            code, _, err = await asyncio.to_thread(relay.stop)
        assert code == 0 and "Traceback" not in err, err
        why = "refused: upstream: the TLS handshake failed: connection reset (is the upstream TLS?)"
        assert f"{why} (RF 0x82)" in err, err
        assert "stopped (0 sessions relayed, 1 refused)" in err, err

    run(_upstream_and(check), 60)


def test_sigterm_stops_it_and_the_banner_names_both_ends() -> None:
    with RelayProcess("--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:102") as relay:
        assert f"listening on 127.0.0.1:{relay.port}" in relay.banner
        assert "relaying to 127.0.0.1:102" in relay.banner
        code, _, err = relay.stop()
    assert code == 0 and "stopped" in err, err


class _Banner(io.StringIO):
    """stderr for main(): tells when the relay listens."""

    def __init__(self) -> None:
        super().__init__()
        self.listening = threading.Event()

    def write(self, text: str) -> int:
        if "listening on" in text:
            self.listening.set()
        return super().write(text)


def test_the_command_in_this_process_with_log_pcap_and_status(tmp_path: Path) -> None:
    """``main(["relay", ...])`` in this process (so its code is measured): a session goes
    through, --status shows it with both legs, --log and --pcap are written, SIGTERM ends
    it with exit status 0."""
    status, log, pcap = tmp_path / "status.json", tmp_path / "log.jsonl", tmp_path / "r.pcap"
    ports: queue.Queue[int] = queue.Queue()
    err = _Banner()
    done = threading.Event()
    seen: list[dict[str, object]] = []
    problems: list[BaseException] = []

    async def helper() -> None:
        async def echo(session: sessionlayer.Session) -> None:
            async for data in session:
                await session.send(data)

        async with await sessionlayer.serve(echo, config=SessionConfig.kernel_duplex(),
                                            options=PLAIN, accept_data=lambda r: b"ok") as up:
            ports.put(up.port)
            assert await asyncio.to_thread(err.listening.wait, 20)
            port = int(err.getvalue().split("listening on 127.0.0.1:")[1].split(",")[0])
            async with await _connect(port, b"\x00\x01") as session:  # type: ignore[attr-defined]
                await session.send(b"through the command")
                assert await asyncio.wait_for(session.receive(), 5) == b"through the command"
                async with asyncio.timeout(10):
                    while True:  # --status is rewritten every second
                        with contextlib.suppress(FileNotFoundError, ValueError):
                            document = json.loads(status.read_text())
                            if document["sessions"]:
                                seen.append(document)
                                break
                        await asyncio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.to_thread(done.wait, 20)

    def thread_main() -> None:
        try:
            asyncio.run(helper())
        except BaseException as exc:  # reported below; the relay must stop regardless
            problems.append(exc)
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    up_port = ports.get(timeout=20)
    code = main(["relay", "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{up_port}",
                 "--status", str(status), "--log", str(log), "--pcap", str(pcap)],
                stdout=io.StringIO(), stderr=err)  # fmt: skip
    done.set()
    thread.join(20)
    assert not problems, problems
    assert code == 0, err.getvalue()
    (info,) = seen[0]["sessions"]  # type: ignore[misc]
    assert info["phase"] == "open" and info["client"]["state"] == "STA713"
    assert info["upstream"]["peer"] == f"127.0.0.1:{up_port}"
    last = json.loads(status.read_text())
    assert last["stopped"] is True
    octets = last["stats"]["octets"]  # (of the sessions over: the one relayed, both legs)
    assert octets["client in"] > 0 and octets["upstream out"] > 0, octets
    kinds = {json.loads(line).get("spdu") for line in log.read_text().splitlines()}
    assert {"CN", "AC", "DT", "FN", "DN"} <= kinds
    assert len(read_tcp_streams(pcap)) == 4  # two legs, both directions
    assert "released" in err.getvalue() and "stopped (1 sessions relayed)" in err.getvalue()


def test_admin_serves_the_sessions_that_status_shows() -> None:
    async def check(upstream: int) -> None:
        with RelayProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream}",
                          "--admin", "127.0.0.1:0") as relay:  # fmt: skip
            admin = int(relay.wait_for(r"admin on http://127\.0\.0\.1:(\d+)")[1])
            async with await _connect(relay.port, b"\x00\x01") as session:  # type: ignore[attr-defined]
                await session.send(b"x")
                await asyncio.wait_for(session.receive(), 5)
                out = io.StringIO()
                code = await asyncio.to_thread(main, ["status", f"127.0.0.1:{admin}", "--json"],
                                               stdout=out, stderr=io.StringIO())  # fmt: skip
                assert code == 0
                document = json.loads(out.getvalue())
                assert document["kind"] == "relay" and document["stats"]["relayed"] == 1
                (row,) = document["sessions"]
                assert row["phase"] == "open" and row["client"]["state"] == "STA713"
                assert row["upstream"]["peer"] == f"127.0.0.1:{upstream}"
                table = io.StringIO()
                assert await asyncio.to_thread(main, ["status", f"127.0.0.1:{admin}", "--once"],
                                               stdout=table, stderr=io.StringIO()) == 0
                assert "1 relayed sessions" in table.getvalue() and "STA713" in table.getvalue()
                metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{admin}/metrics")
                assert 'sessionlayer_relay_sessions{phase="open"} 1.0' in metrics
                assert "sessionlayer_relay_relayed_total 1.0" in metrics
                assert "sessionlayer_relay_opened_total 0.0" in metrics  # (counted at its end)
            code, _, err = await asyncio.to_thread(relay.stop)
            assert code == 0, err

    run(_upstream_and(check), 60)


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as answer:
        text: str = answer.read().decode()
        return text


def test_a_file_sent_and_fetched_with_checkpoints_every_mib_through_the_relay(
    tmp_path: Path,
) -> None:
    """``sessionlayer send FILE --checkpoint 1`` (and ``get``) through ``sessionlayer
    relay``, all three as the user runs them.  A checkpoint every MiB puts a major sync
    point right behind the client's acknowledgement point (every 8 MiB): the server's MIA
    met the relay's machine waiting to answer the MAP, and the old relay aborted every such
    transfer at its first acknowledgement point.  Now the file arrives whole, both ways."""
    from tests.cli.files_helpers import Serve, result, send
    from tests.cli.test_files import MIB, get, make_file, sha

    src = make_file(tmp_path / "big.bin", 20 * MIB + 5)

    async def main() -> None:
        server = await Serve(tmp_path / "srv").start()
        try:
            with RelayProcess("--listen", "127.0.0.1:0",
                              "--upstream", f"127.0.0.1:{server.port}") as relay:  # fmt: skip
                (tmp_path / "state").mkdir()  # (--state-dir must exist)
                state = ["--json", "--checkpoint", "1", "--state-dir", str(tmp_path / "state")]
                status, out, err = await send(str(src), f"127.0.0.1:{relay.port}", *state)
                assert status == 0, err + relay.stderr()
                res = result(out)
                assert res["sent"] == src.stat().st_size and res["checkpoints"] == 21, res
                assert sha(tmp_path / "srv" / "files" / "big.bin") == sha(src)
                (tmp_path / "back").mkdir()
                status, out, err = await get("big.bin", f"127.0.0.1:{relay.port}", *state,
                                             "-o", str(tmp_path / "back"))  # fmt: skip
                assert status == 0, err + relay.stderr()
                assert result(out)["checkpoints"] == 21
                assert sha(tmp_path / "back" / "big.bin") == sha(src)
                code, _, log = await asyncio.to_thread(relay.stop)
                assert code == 0, log
                assert "aborted" not in log and log.count("released: released by") == 2, log
        finally:
            await server.stop()

    run(main(), 120)
