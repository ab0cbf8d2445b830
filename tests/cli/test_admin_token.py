"""``--admin-token FILE``: the admin endpoint (``serve``'s and ``relay``'s) asks every
request for ``Authorization: Bearer TOKEN`` and answers 401 otherwise; ``status
--admin-token FILE`` sends it.  Before there was no way to protect the endpoint: whoever
reached its port saw every session, its peer and its file names."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests.relay.cliproc import RelayProcess

from sessionlayer import cli
from sessionlayer.aio.sockets import is_loopback

from .files_helpers import Serve

TOKEN = "k3Q7vYw0yZ-token-for-the-tests"


def token_file(tmp_path: Path, text: str = TOKEN, name: str = "admin.token") -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def status(port: int, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["status", f"127.0.0.1:{port}", "--json", *extra], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def get(port: int, path: str, token: str | None, scheme: str = "Bearer") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"{scheme} {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def check_endpoint(port: int, tmp_path: Path) -> None:
    """What every admin endpoint with a token does."""
    right, wrong = token_file(tmp_path, name="right"), token_file(tmp_path, "x" * 20, "wrong")
    for path in ("/sessions", "/metrics"):
        assert get(port, path, None) == get(port, path, "x" * 20) == 401
        assert get(port, path, TOKEN) == 200
        assert get(port, path, TOKEN, "bearer") == 200  # (RFC 7235: the scheme in any case)
        assert get(port, path, TOKEN, "Basic") == 401
    code, out, err = status(port)
    assert code == 1 and "asks for a token: --admin-token FILE" in err, err
    assert json.loads(out)["exit"] == 1
    code, _, err = status(port, "--admin-token", str(wrong))
    assert code == 1 and "refused the token of --admin-token" in err, err
    code, out, err = status(port, "--admin-token", str(right))
    assert code == 0 and "sessions" in json.loads(out), err


def test_serve_admin_asks_for_its_token(tmp_path: Path) -> None:
    async def main() -> None:
        server = await Serve(tmp_path / "srv", "--admin", "127.0.0.1:0", "--admin-token",
                             str(token_file(tmp_path))).start()  # fmt: skip
        try:
            assert server.admin_port is not None
            await asyncio.to_thread(check_endpoint, server.admin_port, tmp_path)
        finally:
            await server.stop()
        assert b"Traceback" not in server.err and b"warning" not in server.err.lower()

    asyncio.run(main())


def test_relay_admin_asks_for_its_token(tmp_path: Path) -> None:
    with RelayProcess("--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--admin",
                      "127.0.0.1:0", "--admin-token", str(token_file(tmp_path))) as relay:
        admin = int(relay.wait_for(r"admin on http://127\.0\.0\.1:(\d+)")[1])
        check_endpoint(admin, tmp_path)


@pytest.mark.usefixtures("logger_kept")
@pytest.mark.parametrize(("text", "said"), [
    ("short", "must be a token of at least 16 printable ASCII characters"),
    ("", "must be a token of at least 16"),
    ("t\u00e9" * 10, "must be a token of at least 16 printable ASCII"),
])  # fmt: skip
def test_a_token_file_without_a_usable_token_is_refused(tmp_path: Path, text: str,
                                                        said: str) -> None:  # fmt: skip
    path = token_file(tmp_path, text)
    for argv in (["status", "127.0.0.1:1"],
                 ["serve", "--admin", "127.0.0.1:0", "--data-dir", str(tmp_path)]):  # fmt: skip
        err = io.StringIO()
        assert cli.main([*argv, "--admin-token", str(path)], stdout=io.StringIO(),
                        stderr=err) == 1, err.getvalue()  # fmt: skip
        assert said in err.getvalue() and err.getvalue().count("\n") == 1, err.getvalue()


@pytest.mark.usefixtures("logger_kept")
def test_admin_token_without_admin_is_a_usage_mistake(tmp_path: Path) -> None:
    err = io.StringIO()
    assert cli.main(["serve", "--admin-token", str(token_file(tmp_path)), "--data-dir",
                     str(tmp_path)], stdout=io.StringIO(), stderr=err) == cli.EXIT_BAD_INPUT
    assert "--admin-token needs --admin" in err.getvalue()


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True),
                                                ("::1", True), ("localhost", True),
                                                ("0.0.0.0", False), ("::", False),
                                                ("192.0.2.1", False)])  # fmt: skip
def test_which_admin_addresses_are_loopback(host: str, loopback: bool) -> None:
    """An admin endpoint off loopback without ``--admin-token`` is a WARNING at start."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("page", ["/sessions", "/sessions/"])
def test_status_takes_the_admin_endpoints_sessions_page_as_its_url(tmp_path: Path,
                                                                    page: str) -> None:  # fmt: skip
    """``--admin http://HOST:PORT/sessions`` is the endpoint whose page it names: it was
    asked for /sessions/sessions, a 404 ("is not a sessionlayer admin endpoint")."""

    async def main() -> None:
        server = await Serve(tmp_path / "srv", "--admin", "127.0.0.1:0").start()
        try:
            out, err = io.StringIO(), io.StringIO()
            url = f"http://127.0.0.1:{server.admin_port}{page}"
            code = await asyncio.to_thread(cli.main, ["status", "--admin", url, "--json"],
                                           stdout=out, stderr=err)  # fmt: skip
            assert code == 0 and err.getvalue() == "", err.getvalue()
            assert json.loads(out.getvalue())["sessions"] == []
        finally:
            await server.stop()

    asyncio.run(main())
