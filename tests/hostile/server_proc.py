"""A sessionlayer echo server in a process of its own, for the hostile-client battery.

    python tests/hostile/server_proc.py --port-file F --status-file S --log L \
        [--options '{"idle_timeout": 5}'] [--max-sessions N]

Serves ``sessionlayer.serve(echo, "127.0.0.1", 0, options=Options(**options),
max_sessions=N)`` until SIGTERM (or SIGINT).  It writes:

* ``--port-file``: the port, once listening (written to a temporary name, then renamed);
* ``--status-file``: every 0.2 s, JSON ``{"sessions", "rss", "fds", "time", "seq"}``
  (``len(server.sessions)``, resident bytes from /proc/self/statm, open descriptors,
  wall-clock time and a counter), renamed into place so a reader never sees half of it;
  a last one with ``"stopped": true`` on the way out;
* ``--log``: one JSON object per line per log record: level, logger, message, exc_text.

The test side is ``harness.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

STATUS_PERIOD = 0.2
_PAGE = os.sysconf("SC_PAGE_SIZE")


class JsonLines(logging.Formatter):
    """One line per record: {"level", "logger", "message", "exc_text"}."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        exc_text = None
        if record.exc_info:
            exc_text = self.formatException(record.exc_info)
        elif record.exc_text:
            exc_text = record.exc_text
        if record.stack_info:
            exc_text = (exc_text or "") + self.formatStack(record.stack_info)
        return json.dumps(
            {
                "level": record.levelname,
                "logger": record.name,
                "message": message,
                "exc_text": exc_text,
            }
        )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _status(server: Any, seq: int, stopped: bool = False) -> dict[str, Any]:
    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return {
        "sessions": len(server.sessions),
        "rss": rss_pages * _PAGE,
        "fds": len(os.listdir("/proc/self/fd")),
        "time": time.time(),
        "seq": seq,
        "stopped": stopped,
    }


async def echo(session: Any) -> None:
    async for data in session:
        await session.send(data)


async def main(args: argparse.Namespace) -> None:
    import sessionlayer

    options = sessionlayer.Options(**json.loads(args.options))
    config = sessionlayer.SessionConfig(abort_timeout=args.abort_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    status_path = Path(args.status_file)
    server = await sessionlayer.serve(
        echo, "127.0.0.1", 0, options=options, config=config, max_sessions=args.max_sessions
    )
    seq = 0
    _write_atomically(status_path, json.dumps(_status(server, seq)))
    _write_atomically(Path(args.port_file), str(server.port))
    logging.getLogger("hostile").info("serving on port %d", server.port)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_PERIOD)
            seq += 1
            _write_atomically(status_path, json.dumps(_status(server, seq)))
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        _write_atomically(status_path, json.dumps(_status(server, seq + 1, stopped=True)))
        logging.getLogger("hostile").info("stopped")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--status-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--options", default="{}", help="sessionlayer.Options fields, JSON")
    parser.add_argument("--max-sessions", type=int, default=1000)
    parser.add_argument("--abort-timeout", type=float, default=1.0, help="TIM, seconds")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    handler = logging.FileHandler(arguments.log)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=arguments.log_level, handlers=[handler])
    logging.captureWarnings(True)
    try:
        asyncio.run(main(arguments))
    except Exception:
        logging.getLogger("hostile").exception("the server process failed")
        raise
