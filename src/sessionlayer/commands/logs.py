"""One log line per session event for ``sessionlayer serve``: text or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

__all__ = ["setup_logging"]


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
        return line


def setup_logging(fmt: str, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    logger = logging.getLogger("sessionlayer")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
