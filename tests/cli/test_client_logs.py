"""The commands that run one session (``send``, ``get``, ``status``) put the library's log
on stderr one line per error, never a traceback, and add nothing to the line that says why
the command failed.  Before, with no handler of theirs, Python's last-resort handler printed
each warning raw beside that line, and an error logged with its exception in full."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest
from tests.rawpeer import RawPeer, accept_session, raw_server

from sessionlayer.commands.logs import ShortExceptions, client_logging
from sessionlayer.commands.serve import SERVER_CONFIG

from .files_helpers import make_file, transfer


def test_a_peer_that_breaks_the_protocol_is_said_once(tmp_path: Path) -> None:
    src = make_file(tmp_path / "t.bin", 1000)

    async def main() -> tuple[int | None, str, str]:
        async def breaks(raw: RawPeer) -> None:
            # (the units a file transfer asks for: it starts an activity, then the peer
            # breaks the protocol; with fewer, send failed first on the activity at times)
            await accept_session(raw, SERVER_CONFIG)
            await raw.tsdu()  # (the transfer's first request)
            raw.send_tsdu(b"\xff\xff\xff\xff")  # no SPDU
            await raw.closed()

        async with raw_server(breaks) as port:
            return await transfer("send", str(src), f"127.0.0.1:{port}",
                                  "--state-dir", str(tmp_path))  # fmt: skip

    status, _, err = asyncio.run(main())
    assert status == 1, err
    assert err.count("\n") == 1 and err.startswith("sessionlayer send: "), err
    assert "SI 255" in err and "warning" not in err and "Traceback" not in err, err


def failing() -> None:
    try:
        {}["key"]
    except KeyError:
        logging.getLogger("sessionlayer.aio.connection").error(
            "internal error in a session task", exc_info=True)  # fmt: skip


@pytest.mark.parametrize("debug", ["", "1"])
def test_an_error_logged_with_its_exception(monkeypatch: pytest.MonkeyPatch, debug: str) -> None:
    monkeypatch.setenv("SESSIONLAYER_DEBUG", debug)
    logger = logging.getLogger("sessionlayer")
    before = logger.handlers[:], logger.level, logger.propagate
    stream = io.StringIO()
    put_back = client_logging("get", stream)
    try:
        logging.getLogger("sessionlayer.aio").warning("left out: the command says it")
        failing()
    finally:
        put_back()
    text = stream.getvalue()
    assert text.startswith("sessionlayer get: error: internal error in a session task")
    if debug:
        assert "Traceback (most recent call last)" in text and text.rstrip().endswith(
            "KeyError: 'key'")
    else:
        assert text == ("sessionlayer get: error: internal error in a session task"
                        " (KeyError: 'key')\n")  # fmt: skip
    assert (logger.handlers, logger.level, logger.propagate) == before


def test_the_relays_log_lines_are_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """``relay``'s log (its own format, kept) showed an unexpected error's traceback."""
    monkeypatch.setenv("SESSIONLAYER_DEBUG", "0")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ShortExceptions("%(levelname)s %(message)s"))
    logger = logging.getLogger("sessionlayer.test_client_logs")
    logger.addHandler(handler)
    try:
        try:
            {}["key"]
        except KeyError:
            logger.error("relay: unexpected error in a TLS accept", exc_info=True)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "ERROR relay: unexpected error in a TLS accept (KeyError: 'key')\n"
