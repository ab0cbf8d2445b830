"""The server's text log: what a peer sent (a tunnel target, a refusal's text) cannot make a
second line or reach the terminal as an escape (before: a target with a newline wrote a
forged log line, and an ESC went to the terminal as it was)."""

from __future__ import annotations

import io
import logging

from sessionlayer.commands.logs import setup_logging


def test_a_peers_newline_and_escape_stay_on_one_line() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("sessionlayer")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        setup_logging("text", stream)
        logging.getLogger("sessionlayer.aio").info(
            "refusing session from %s: %s", "127.0.0.1:1",
            "evil\n12:00:00 info: session FAKE accepted\x1b[31m")  # fmt: skip
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    text = stream.getvalue()
    assert text.count("\n") == 1 and "\x1b" not in text, text
    assert "evil\\n12:00:00" in text and "\\x1b[31m" in text
