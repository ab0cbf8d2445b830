"""Log lines on stderr: one per session event for ``serve`` and ``tunnel`` (text or
JSON), and for the commands that run one session (``send``, ``get``, ``status``) the
library's errors, one line each."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from . import debugging, printable

__all__ = ["ShortExceptions", "client_logging", "setup_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        session_id = getattr(record, "session_id", None)
        if session_id:
            obj["session_id"] = session_id
        if record.exc_info:
            obj["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(obj)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            line += f" ({self.formatException(record.exc_info).splitlines()[-1]})"
        return printable(line)  # (a peer's text: no second line, no terminal escape)


def setup_logging(fmt: str, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    logger = logging.getLogger("sessionlayer")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class ShortExceptions(logging.Formatter):
    """A formatter that keeps a record with an exception on one line: ``... (KeyError:
    'x')``, the exception's last line; all of the traceback with ``SESSIONLAYER_DEBUG=1``."""

    def format(self, record: logging.LogRecord) -> str:
        if not record.exc_info or debugging():
            return super().format(record)
        kept = record.exc_info, record.exc_text
        record.exc_info = record.exc_text = None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = kept
        return f"{line} ({self.formatException(kept[0]).splitlines()[-1]})"


class _ClientFormatter(ShortExceptions):
    """``sessionlayer send: error: ...``."""

    def __init__(self, command: str) -> None:
        super().__init__(f"sessionlayer {command}: %(level)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.level = record.levelname.lower()
        return super().format(record)


def client_logging(command: str, stream: TextIO) -> Callable[[], None]:
    """Errors of the ``sessionlayer`` loggers as one line each on ``stream`` while a
    one-session command runs; returns what puts the logger back.  Without it Python's
    last-resort handler printed an error logged with its traceback in full, and each
    warning raw.  A client's warnings are about its one session (a peer's protocol error,
    say), which the command's own last line reports: they are left out, not said twice."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_ClientFormatter(command))
    logger = logging.getLogger("sessionlayer")
    kept = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [handler]
    logger.setLevel(logging.ERROR)
    logger.propagate = False

    def put_back() -> None:
        logger.handlers[:], logger.propagate = kept[0], kept[2]
        logger.setLevel(kept[1])

    return put_back
