"""Command-line mistakes and failures are one line, never a traceback: out-of-range ports
and times are refused by argparse with the usage, a name that does not resolve says so
(not "Unknown error -2"), and a bug of ours is one line with the way to its traceback."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from sessionlayer import cli
from sessionlayer.aio.sockets import unreachable
from sessionlayer.commands import CommandError, parse_address


@pytest.mark.parametrize(
    "argv",
    [["serve", "--port", "99999"], ["serve", "--port", "-1"], ["serve", "--port", "x"],
     ["serve", "--resume-timeout", "-5"], ["serve", "--resume-timeout", "inf"],
     ["send", "f", "--checkpoint", "nan"], ["send", "f", "--checkpoint", "inf"],
     ["send", "f", "--checkpoint", "1e-9"], ["get", "f", "--checkpoint", "-5"],
     ["tunnel", "--listen", "1", "--to", "h:1", "--keepalive", "nan"],
     ["tunnel", "--listen", "1", "--to", "h:1", "--keepalive", "1e-9"],
     ["tunnel", "--listen", "1", "--to", "h:1", "--give-up", "inf"],
     ["tunnel", "--listen", "1", "--to", "h:1", "--max-streams", "0"],
     ["tunnel", "--listen", "1", "--to", "h:1", "--max-window", "1"],
     ["serve", "--tunnel-max-window", "4194304"], ["serve", "--tunnel-window", "x"],
     ["serve", "--port", "\u0663"],
     ["relay", "--listen", "x", "--upstream", "y", "--rotate-size", "10T"],
     ["relay", "--listen", "x", "--upstream", "y", "--rotate-keep", "-1"]],
)  # fmt: skip
def test_out_of_range_arguments_are_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    option = [a for a in argv if a.startswith("--")][-1]  # (the bad one is the last)
    assert f"argument {option}" in err and "Traceback" not in err


def test_why_a_connect_failed_is_words() -> None:
    resolver = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert unreachable(resolver) == "Name or service not known"
    assert unreachable(ConnectionRefusedError(111, "Connection refused")) == (
        "Connection refused"
    )
    assert unreachable(TimeoutError()) == "timed out"
    reset = ConnectionResetError(104, "Connection reset by peer")
    assert unreachable(reset) == "Connection reset by peer"
    several = OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 1, 0, 0)")
    assert unreachable(several).startswith("Multiple exceptions")  # (not "timed out")


def test_a_bug_is_one_line_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from sessionlayer.commands import status

    def broken(*_: object) -> int:
        raise RuntimeError("something we did not expect")

    monkeypatch.setattr(status, "run", broken)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.delenv("SESSIONLAYER_DEBUG", raising=False)
    assert cli.main(["status"], stdout=out, stderr=err) == cli.EXIT_INTERNAL
    assert err.getvalue().count("\n") == 1 and "RuntimeError: something we did" in err.getvalue()
    assert "SESSIONLAYER_DEBUG=1" in err.getvalue() and "Traceback" not in err.getvalue()
    monkeypatch.setenv("SESSIONLAYER_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["status"], stdout=out, stderr=err)


@pytest.mark.parametrize("text", ["[::1", "[::1]x", "127.0.0.1:\u0663", "h:65536",
                                  "::1:45300", "::1"])  # (unbracketed IPv6: ambiguous)
def test_a_malformed_address_is_one_line(text: str) -> None:
    with pytest.raises(CommandError, match="not a"):
        parse_address(text)


@pytest.mark.parametrize(("text", "said"), [("0", "not a port: '0' (1 to 65535)"),
                                           ("99999", "not a port: '99999' (1 to 65535)")])
def test_a_port_alone_is_quoted_as_typed(text: str, said: str) -> None:
    """It was "not a port: '0' (in ':0'; ...)": a text the user never typed."""
    with pytest.raises(CommandError) as info:
        parse_address(text)
    assert str(info.value) == said
    assert parse_address("0", listen=True) == ("127.0.0.1", 0)


@pytest.mark.parametrize("argv", [
    ["send", "/etc/hostname", "127.0.0.1:99999"],
    ["get", "x", "127.0.0.1:0"],  # (port 0 only to listen on: it was a bug's exit 70)
    ["status", "127.0.0.1:abc"],
    ["tunnel", "--listen=-1", "--via", "127.0.0.1:1"],
    ["tunnel", "--listen", "9000", "--via", "127.0.0.1:0"],
    ["relay", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:0"],
    ["relay", "--listen", "[::1", "--upstream", "127.0.0.1:102"],
    ["serve", "--port", "0", "--admin", "127.0.0.1:70000"],
    # (an IPv6 address not in brackets was split at its last colon: ("2001:db8:", 22))
    ["serve", "--port", "0", "--store", "memory", "--allow-tunnel", "2001:db8::22"],
    ["tunnel", "--listen", "1", "--via", "127.0.0.1:1", "--to", "fe80::1:22"],
])  # fmt: skip
def test_a_malformed_address_is_a_usage_mistake(argv: list[str]) -> None:
    """Exit status 2 and one line naming what is wrong, before anything is opened."""
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(argv, stdout=out, stderr=err) == cli.EXIT_BAD_INPUT, err.getvalue()
    said = err.getvalue()
    assert said.count("\n") == 1 and said.startswith(f"sessionlayer {argv[0]}: "), said
    assert any(w in said for w in ("not a port", "not an address", "expected [HOST:]PORT",
                                   "not HOST:PORT")), said  # fmt: skip


@pytest.mark.parametrize(("argv", "said"), [
    (["--admin", "ftp://127.0.0.1:1"], "not an http:// or https:// URL"),
    # these went to the network: "Connection refused" (99999, 0), "nonnumeric port",
    # "Invalid IPv6 URL", "no host given", and ::1:8080 was asked of http://::1:8080
    (["--admin", "http://127.0.0.1:99999"], "--admin http://127.0.0.1:99999: expected"),
    (["--admin", "http://127.0.0.1:0"], "PORT 1 to 65535"),
    (["--admin", "http://127.0.0.1:x"], "PORT 1 to 65535"),
    (["--admin", "https://[::1"], "an IPv6 HOST in brackets"),
    (["--admin", "http://"], "expected http://HOST"),
    (["--admin", "::1:8080"], "--admin not an address: '::1:8080'"),
    (["--admin", "127.0.0.1:0"], "--admin not a port: '0'"),
    (["--admin", "127.0.0.1:abc"], "--admin not a port: 'abc'"),
    (["127.0.0.1:1", "--admin", "127.0.0.1:2"], "not both"),
])  # fmt: skip
def test_an_admin_url_that_is_not_one_is_a_usage_mistake(argv: list[str], said: str) -> None:
    """``status --admin``: exit status 2 and one line, before anything is asked."""
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["status", *argv], stdout=out, stderr=err) == cli.EXIT_BAD_INPUT, (
        err.getvalue())
    assert said in err.getvalue() and err.getvalue().count("\n") == 1, err.getvalue()
    assert err.getvalue().startswith("sessionlayer status: "), err.getvalue()


@pytest.mark.usefixtures("logger_kept")
def test_files_that_are_not_regular_files_are_refused_at_once(tmp_path: Path) -> None:
    """A FIFO would hang the read (a TLS file, --auth) or the transfer; a directory fail
    obscurely: one line naming the option, exit status 1."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for argv, needle in [
        (["serve", "--auth", str(fifo), "--data-dir", str(tmp_path)], "--auth"),
        (["serve", "--tls-cert", str(fifo), "--tls-key", str(fifo)], "--tls-cert"),
        (["send", str(tmp_path / "x"), "127.0.0.1:1", "--ca", str(tmp_path)], "--ca"),
        (["send", str(fifo), "127.0.0.1:1", "--state-dir", str(tmp_path)], "not a regular"),
        (["relay", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--status",
          str(tmp_path)], "--status"),
        # a FIFO used to block the relay's start (--log, --pcap) or become a file (--status)
        *([["relay", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", f"--{name}",
            str(fifo)], f"--{name} {fifo}: not a regular file"]
          for name in ("status", "log", "pcap")),
        # -o DIR/ that does not exist used to become a file named DIR; -o in a directory
        # that does not exist, to make it
        (["get", "x", "127.0.0.1:1", "-o", str(tmp_path / "none") + "/"], "no such directory"),
        (["get", "x", "127.0.0.1:1", "-o", str(tmp_path / "no" / "x")], "no such directory"),
    ]:  # fmt: skip
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(argv, stdout=out, stderr=err) == 1, (argv, err.getvalue())
        assert needle in err.getvalue() and err.getvalue().count("\n") == 1, err.getvalue()
    assert fifo.exists() and not fifo.is_file()  # (still the FIFO)
    assert not (tmp_path / "none").exists() and not (tmp_path / "no").exists()


@pytest.mark.usefixtures("logger_kept")
@pytest.mark.parametrize(("argv", "said"), [
    (["serve", "--files", "{file}", "--data-dir", "{tmp}/srv"], "--files {file}: not a directory"),
    (["serve", "--data-dir", "{file}"], "--data-dir {file}: not a directory"),
    (["serve", "--client-ca", "{file}"], "--client-ca needs --tls-cert and --tls-key"),
    (["status", "--admin", "127.0.0.1:1"], "admin endpoint http://127.0.0.1:1: "),
    (["serve", "--store", "redis://127.0.0.1:1/abc", "--data-dir", "{tmp}/data"],
     "the Redis URL 'redis://127.0.0.1:1/abc' names no database: redis://"),
])  # fmt: skip
def test_what_is_wrong_is_named(argv: list[str], said: str, tmp_path: Path) -> None:
    """One line that says what is wrong with what: a regular file as a directory used to be
    "cannot use ...: File exists", --client-ca alone "--tls-cert and --tls-key go together",
    --admin HOST:PORT "unknown url type" (it is taken as http://HOST:PORT now)."""
    (tmp_path / "small.txt").write_text("x")
    fill = {"file": str(tmp_path / "small.txt"), "tmp": str(tmp_path)}
    out, err = io.StringIO(), io.StringIO()
    argv = [arg.format(**fill) for arg in argv] + (["--port", "0"] if argv[0] == "serve" else [])
    assert cli.main(argv, stdout=out, stderr=err) == 1, err.getvalue()
    assert said.format(**fill) in err.getvalue() and err.getvalue().count("\n") == 1, (
        err.getvalue())
    assert not (tmp_path / "srv").exists()


def test_an_answer_that_is_not_a_sessionlayer_admin_endpoint_is_one_line(
    tmp_path: Path,
) -> None:
    """``status`` against some other HTTP server: exit 1, never "internal error"."""
    (tmp_path / "sessions").write_text(json.dumps({"sessions": [{"id": 1}]}))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        for argv, said in [
            (["status", f"127.0.0.1:{port}", "--once"], "is not a sessionlayer admin endpoint"),
            # (--admin HOST:PORT is http://HOST:PORT: it was "unknown url type")
            (["status", "--admin", f"127.0.0.1:{port}", "--json"],
             f"http://127.0.0.1:{port} is not a sessionlayer admin endpoint"),
        ]:  # fmt: skip
            out, err = io.StringIO(), io.StringIO()
            assert cli.main(argv, stdout=out, stderr=err) == 1, err.getvalue()
            assert said in err.getvalue() and "internal" not in err.getvalue(), err.getvalue()
    finally:
        httpd.shutdown()
        httpd.server_close()


_INTERRUPT_AT_IMPORT = '''
import sys

class _CtrlC:  # Ctrl-C arrives while {module} loads
    def find_spec(self, name, path=None, target=None):
        if name == "{module}":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, _CtrlC())
'''


@pytest.mark.parametrize("module", ["sessionlayer.cli", "sessionlayer.machine.table"])
@pytest.mark.parametrize("how", ["script", "-m"])
def test_ctrl_c_while_the_modules_load_is_one_line(module: str, how: str,
                                                    tmp_path: Path) -> None:  # fmt: skip
    """The console script (as installed) and ``python -m sessionlayer``: an interrupt before
    the command line's modules are loaded ends as one at any later point does."""
    import subprocess
    import sys

    (tmp_path / "sitecustomize.py").write_text(_INTERRUPT_AT_IMPORT.format(module=module))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    script = Path(sys.executable).with_name("sessionlayer")
    argv = [str(script)] if how == "script" else [sys.executable, "-m", "sessionlayer"]
    done = subprocess.run([*argv, "status", "--help"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (130, "sessionlayer: interrupted\n")


def _answering(answer: bytes) -> tuple[socket.socket, threading.Thread]:
    """A TCP server on loopback that reads a request and sends ``answer``, then closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(("answer", "said"), [
    # (it was "cannot reach the admin endpoint ...: Bad Request": it was reached)
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
     "is not a sessionlayer admin endpoint (GET /sessions: HTTP 400 Bad Request)"),
    # (it was the octets it sent, an escape to the terminal among them)
    (b"\x1b[2J\x03\x00\x00\x0bgarbage\r\n", "not HTTP (BadStatusLine: \\x1b[2J\\x03"),
    # (its reason phrase was printed as it came: a terminal title, a cleared screen)
    (b"HTTP/1.0 404 \x1b]0;pwned\x07\x1b[2J\r\n\r\n",
     "HTTP 404 \\x1b]0;pwned\\x07\\x1b[2J)"),
    # (it was "not HTTP (IncompleteRead(2 bytes read, 3 more expected))")
    (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n[]",
     "cut short (2 octets of its answer came)"),
    # (it was exit 70, "internal error: RecursionError")
    (b"HTTP/1.0 200 OK\r\n\r\n" + b"[" * 200_000 + b"]" * 200_000, "nested too deep"),
])  # fmt: skip
def test_status_of_a_server_that_is_not_an_admin_endpoint_says_so(answer: bytes,
                                                                   said: str) -> None:  # fmt: skip
    server, thread = _answering(answer)
    try:
        port = server.getsockname()[1]
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(["status", f"127.0.0.1:{port}", "--json"], stdout=out,
                        stderr=err) == 1, err.getvalue()  # fmt: skip
        assert err.getvalue().count("\n") == 1, err.getvalue()
        assert said in err.getvalue() and "\x1b" not in err.getvalue(), err.getvalue()
        assert said in json.loads(out.getvalue())["error"] and "\x1b" not in out.getvalue()
    finally:
        server.close()
        thread.join(5)


def test_status_of_an_address_nobody_listens_on_says_it_in_words() -> None:
    """It was "cannot reach the admin endpoint ...: [Errno 111] Connection refused"."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["status", f"127.0.0.1:{port}", "--once"], stdout=out, stderr=err) == 1
    assert err.getvalue() == (f"sessionlayer status: cannot reach the admin endpoint"
                              f" http://127.0.0.1:{port}: Connection refused\n")  # fmt: skip


@pytest.mark.parametrize("option", ["--port", "--admin"])
def test_a_port_in_use_is_said_in_words(tmp_path: Path, option: str) -> None:
    """It was "...: error while attempting to bind on address ('127.0.0.1', 1234): address
    already in use", asyncio's words with a socket address tuple."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        argv = ["serve", "--data-dir", str(tmp_path), "--store", "memory"]
        argv += ["--port", str(port)] if option == "--port" else [
            "--port", "0", "--admin", f"127.0.0.1:{port}"]  # fmt: skip
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(argv, stdout=out, stderr=err) == 1, err.getvalue()
    what = "cannot listen on" if option == "--port" else "cannot serve --admin on"
    assert err.getvalue() == (f"sessionlayer serve: {what} 127.0.0.1:{port}: Address already"
                              " in use\n")  # fmt: skip


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["send", "get", "status"])
def test_json_failures_answer_on_stdout_too(tmp_path: Path, command: str) -> None:
    """``--json`` and the command fails: stdout has one JSON object saying why and the exit
    status, stderr the usual line.  Before, stdout was empty: a script parsing it got
    nothing to parse."""
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    where = f"127.0.0.1:{closed_port()}"
    argv = {"send": ["send", str(src), where, "--state-dir", str(tmp_path)],
            "get": ["get", "f.bin", where, "-o", str(tmp_path / "out.bin"),
                    "--state-dir", str(tmp_path)],
            "status": ["status", "--admin", where]}[command]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert cli.main([*argv, "--json"], stdout=out, stderr=err) == 1, err.getvalue()
    said = err.getvalue()
    assert said.startswith(f"sessionlayer {command}: ") and said.count("\n") == 1, said
    assert "refused" in said
    assert json.loads(out.getvalue()) == {"error": said.split(": ", 1)[1].rstrip("\n"),
                                          "exit": 1}  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(argv, stdout=out, stderr=err) == 1
    assert out.getvalue() == ""  # (without --json, as before)


@pytest.mark.usefixtures("logger_kept")
@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_a_secrets_file_others_may_read_is_warned_of(tmp_path: Path, mode: int,
                                                     warned: bool) -> None:  # fmt: skip
    """``--auth`` holds passwords in the clear (and ``--tls-key`` a private key): readable
    by other users it is a WARNING, as ssh has for keys; before, nothing was said."""
    users = tmp_path / "users.json"
    users.write_text('{"ana": "secret"}')
    users.chmod(mode)
    err = io.StringIO()
    # (a store URL it does not know stops serve right after it read --auth)
    argv = ["serve", "--auth", str(users), "--data-dir", str(tmp_path), "--store", "nope:x"]
    assert cli.main(argv, stdout=io.StringIO(), stderr=err) != 0
    lines = err.getvalue().splitlines()
    assert lines[-1].startswith("sessionlayer serve: "), lines
    said = [line for line in lines if "can be read by other users" in line]
    if warned:
        assert len(said) == 1 and f"(mode {mode:04o}): chmod 600 it" in said[0], lines
        assert f"--auth {users}" in said[0] and "warning" in said[0], lines
    else:
        assert said == [], lines


@pytest.mark.usefixtures("logger_kept")
@pytest.mark.parametrize("text", ["[" * 100_000, '{"ana": "x"', '["ana"]'])
def test_an_auth_file_that_is_not_users_is_one_line_naming_it(tmp_path: Path,
                                                                text: str) -> None:  # fmt: skip
    """``--auth`` that is not a JSON object of names and passwords is exit 1, one line that
    names the file; nested deeper than the decoder goes, it was "internal error:
    RecursionError", exit 70."""
    users = tmp_path / "users.json"
    users.write_text(text)
    users.chmod(0o600)
    err = io.StringIO()
    argv = ["serve", "--auth", str(users), "--data-dir", str(tmp_path), "--port", "0"]
    assert cli.main(argv, stdout=io.StringIO(), stderr=err) == 1, err.getvalue()
    assert err.getvalue() == (f"sessionlayer serve: --auth {users}: not a JSON object of"
                              " user names and passwords\n")  # fmt: skip


def test_status_shows_what_the_endpoint_sent_as_text(tmp_path: Path) -> None:
    """Session fields are shown as they are, never as rich markup or terminal escapes: a
    file named "[/x].bin" made rich raise MarkupError ("internal error", exit 70), and
    "[bold]" vanished into a style."""
    session = {"id": "a" * 32, "peer": "127.0.0.1:9 [bold]", "state": "open", "age": 1.0,
               "bytes_in": 1, "bytes_out": 2, "tokens": 0, "activity": "\u202eevil",
               "progress": {"name": "[/x]\x1b[2J.bin", "size": 10, "done": 5}}  # fmt: skip
    body = json.dumps({"sessions": [session]}).encode()
    server, thread = _answering(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                % (len(body), body))  # fmt: skip
    try:
        out, err = io.StringIO(), io.StringIO()
        port = server.getsockname()[1]
        assert cli.main(["status", f"127.0.0.1:{port}", "--once"], stdout=out,
                        stderr=err) == 0, err.getvalue()  # fmt: skip
    finally:
        server.close()
        thread.join(5)
    text = out.getvalue()
    assert "[/x]\\x1b[2J.bin 50 %" in text and "[bold]" in text, text
    assert "\\u202eevil" in text and "\x1b" not in text and "\u202e" not in text, text
