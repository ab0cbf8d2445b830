"""Command-line mistakes and failures are one line, never a traceback: out-of-range ports
and times are refused by argparse with the usage, a name that does not resolve says so
(not "Unknown error -2"), and a bug of ours is one line with the way to its traceback."""

from __future__ import annotations

import io
import socket

import pytest

from sessionlayer import cli
from sessionlayer.aio.sockets import unreachable


@pytest.mark.parametrize(
    "argv",
    [["serve", "--port", "99999"], ["serve", "--port", "-1"], ["serve", "--port", "x"],
     ["serve", "--resume-timeout", "-5"], ["serve", "--resume-timeout", "inf"]],
)  # fmt: skip
def test_out_of_range_arguments_are_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[1]}" in err and "Traceback" not in err


def test_why_a_connect_failed_is_words() -> None:
    resolver = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert unreachable(resolver) == "Name or service not known"
    assert unreachable(ConnectionRefusedError(111, "Connection refused")) == (
        "Connection refused"
    )
    assert unreachable(TimeoutError()) == "timed out"
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
