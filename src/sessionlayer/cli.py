"""The ``sessionlayer`` command line.

Every failure a user can cause (bad hex, an unreadable capture, malformed
SPDUs) ends in one clear line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import string
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from . import __version__
from .aio.sockets import host_port
from .commands import STOP_SIGNALS, CommandError, Terminated, UsageMistake, debugging
from .commands.logs import client_logging
from .dissect import (
    Record,
    StreamDissector,
    dissect_spdus,
    dissect_stream,
    looks_like_tpkt,
    record_line,
    starts_tpkt,
)
from .errors import SessionLayerError
from .spdu.types import ActivityEnd, ActivityEndAck, MajorSyncAck

if TYPE_CHECKING:
    from .capture import Stream

__all__ = ["main"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  #: 128 + SIGTERM
EXIT_INTERNAL = 70  #: a bug of ours (sysexits' EX_SOFTWARE)


class UsageError(Exception):
    """A user mistake reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """A subcommand's options may come between its positionals (``send FILE --state-dir
    DIR HOST:PORT``: argparse took FILE and HOST:PORT as one run of positionals and
    refused HOST:PORT); a usage mistake's message is kept for ``--json``
    (:func:`_usage_json`)."""

    mistake: str | None = None  #: the last usage mistake's message (the process has one)
    _mixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._mixing or not self._intermixable():
            return super().parse_known_args(args, namespace)
        self._mixing = True  # (parse_known_intermixed_args calls this, twice)
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False

    def _intermixable(self) -> bool:
        """What parse_known_intermixed_args takes: no subcommands or REMAINDER of its own
        (nor a mutually exclusive group with a positional, which no command has)."""
        return not any(action.nargs in (argparse.PARSER, argparse.REMAINDER)
                       for action in self._actions)  # fmt: skip

    def error(self, message: str) -> NoReturn:
        _Parser.mistake = message
        super().error(message)


def _usage_json(argv: Sequence[str], out: TextIO) -> None:
    """After a usage mistake of ``send``, ``get`` or ``status`` with ``--json``: the
    documented ``{"error": ..., "exit": 2}`` on stdout, as for any other failure."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in _ONE_SESSION and "--json" in argv and _Parser.mistake is not None:
        with contextlib.suppress(OSError, ValueError):
            out.write(json.dumps({"error": _Parser.mistake, "exit": EXIT_BAD_INPUT}) + "\n")
            out.flush()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sessionlayer",
        description="The OSI session layer (ISO 8327-1 / X.225) over RFC 1006.",
    )
    parser.add_argument("--version", action="version", version=f"sessionlayer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    dec = sub.add_parser(
        "decode",
        help="decode TPKT/COTP/SPDU bytes from hex or a capture",
        description=(
            "Decode hex (arguments or standard input; whitespace ignored; a TPKT stream"
            " starting 03 00, or bare SPDUs) or a pcap/pcapng capture (--pcap, TCP on any"
            " port). Prints one line per TPDU and SPDU."
        ),
    )
    dec.add_argument("hex", nargs="*", help="hex octets; read from standard input if absent")
    dec.add_argument("--pcap", metavar="FILE", help="read a pcap or pcapng capture")
    dec.add_argument("--json", action="store_true", help="print a JSON array of the SPDUs")
    sub.add_parser(
        "demo",
        help="run a server and a client on loopback and show every SPDU they exchange",
    )
    for command in _COMMANDS.values():
        importlib.import_module(f".commands.{command}", __package__).add(sub)
    return parser


#: Subcommands that run sessions (sessionlayer/commands/<module>.py: add() and run()).
_COMMANDS = {"serve": "serve", "send": "send", "get": "get", "status": "status",
             "relay": "relay", "tunnel": "tunnel"}  # fmt: skip
#: The subcommands that log nothing of their own (serve, relay, tunnel set their logs up).
_ONE_SESSION = frozenset({"send", "get", "status"})


def _read_hex(args: Sequence[str], stdin: TextIO) -> bytes:
    text = "".join(args) if args else stdin.read()
    cleaned = "".join(ch for ch in text if ch not in string.whitespace)
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned:
        raise UsageError("no input: give hex octets as arguments or on standard input")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = next((c for c in cleaned if c not in string.hexdigits), None)
        if bad is not None:
            raise UsageError(f"not hex: unexpected character {bad!r}") from None
        raise UsageError("not hex: odd number of hex digits") from None


def _records_from_hex(data: bytes) -> list[Record]:
    if looks_like_tpkt(data):
        dissector = StreamDissector()
        return dissector.feed(data) + dissector.finish()
    return dissect_spdus(data)


def _records_from_pcap(path: str) -> list[tuple[str, Record]]:
    from .capture import read_capture  # dpkt is only needed here

    if not os.path.isfile(path):  # (a FIFO would block the read, a directory fail it)
        raise CommandError(f"--pcap {path}: " + (
            "not a regular file" if os.path.exists(path) else "no such file"))
    try:
        capture = read_capture(path)
    except OSError as exc:
        raise CommandError(f"--pcap {path}: {exc.strerror or exc}") from None
    rows: list[tuple[float, int, str, Record]] = []
    if capture.problem is not None:  # (after the records of the frames before it)
        rows.append((float("inf"), capture.frames, "", Record(0, error=capture.problem)))
    for stream in capture.streams:
        label = f"{_endpoint(stream.src)} > {_endpoint(stream.dst)}"
        base = 0 if looks_like_tpkt(stream.data) else _first_tpkt(stream)
        if base is None:
            continue  # (not OSI traffic)
        records: list[Record] = []
        if base:  # the capture began inside this connection, in a TPKT
            frame = stream.locate(base).frame
            records.append(Record(0, error=f"{base} octets before frame {frame} not decoded"
                                  " (the capture starts inside the connection)"))  # fmt: skip
        starts = [segment.offset - base for segment in stream.segments if segment.offset >= base]
        gaps = [(at - base, n, frame) for at, n, frame in stream.gaps if at > base]
        for record in dissect_stream(stream.data[base:], starts, gaps):
            record.offset += base
            records.append(record)
        for record in records:
            offset = min(record.offset, len(stream.data) - 1)
            segment = stream.locate(offset)
            frame, ts = segment.frame, segment.timestamp
            record.context = {"frame": frame, "stream": label}
            rows.append((ts, frame, label, record))
    rows.sort(key=lambda row: (row[0], row[1]))
    _name_activity_end_acks([(label, record) for _, _, label, record in rows])
    return [(f"#{frame} {label}", record) for _, frame, label, record in rows]


def _first_tpkt(stream: Stream) -> int | None:
    """Where the first segment of ``stream`` that starts a TPKT holding a valid TPDU
    begins (a capture begun mid-connection: what comes before it is the end of a TPKT
    whose start was not captured), or None: not a TPKT stream."""
    for segment in stream.segments[1:]:
        data = stream.data[segment.offset :]
        if starts_tpkt(data):
            first = data[: int.from_bytes(data[2:4], "big")]
            if all(record.error is None for record in dissect_stream(first)):
                return segment.offset
    return None


def _name_activity_end_acks(rows: list[tuple[str, Record]]) -> None:
    """SI 42 answering an AE (ACTIVITY END) from the other direction is AEA, not MAA.

    The SPDU alone cannot tell them apart (X.225 8.3.22/8.3.36 share SI 42); a whole
    capture can, by following the activity.  Hex input, one direction, keeps MAA.
    """
    awaiting: set[str] = set()  # directions whose next SI 42 answers an AE
    for label, record in rows:
        spdu = record.spdu
        if isinstance(spdu, ActivityEnd):
            src, _, dst = label.partition(" > ")
            awaiting.add(f"{dst} > {src}")
        elif isinstance(spdu, MajorSyncAck) and label in awaiting:
            awaiting.discard(label)
            record.spdu = ActivityEndAck(
                serial_number=spdu.serial_number, enclosure=spdu.enclosure,
                user_data=spdu.user_data,
            )  # fmt: skip


def _endpoint(endpoint: tuple[str, int]) -> str:
    return host_port(*endpoint)


def _decode(ns: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    if ns.pcap and ns.hex:
        raise UsageError("give either hex or --pcap, not both")
    if ns.pcap:
        labelled = _records_from_pcap(ns.pcap)
        if not labelled:
            raise UsageError(f"{ns.pcap}: no TPKT (RFC 1006) stream found")
    else:
        labelled = [("", r) for r in _records_from_hex(_read_hex(ns.hex, stdin))]
    errors = [r.error for _, r in labelled if r.error is not None]
    if ns.json:
        spdus: list[dict[str, Any]] = [r.to_dict() for _, r in labelled if r.spdu is not None]
        json.dump(spdus, out, indent=1)
        out.write("\n")
    else:
        for label, record in labelled:
            if record.error is None:
                out.write(f"{label + '  ' if label else ''}{record_line(record)}\n")
    for message in errors:
        err.write(f"sessionlayer decode: {message}\n")
    return EXIT_BAD_INPUT if errors else EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
    exiting: bool = False,
) -> int:
    """Run the command line; return the exit status.  ``exiting``: the process exits right
    after (the console script): once ``serve``, ``tunnel`` or ``relay`` stopped, SIGTERM and
    SIGINT stay ignored up to the exit; otherwise the caller's handlers are put back."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = _parser()
    _Parser.mistake = None
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == EXIT_BAD_INPUT:
            _usage_json(list(sys.argv[1:] if argv is None else argv), out)
        raise
    try:
        if ns.command == "decode":
            return _decode(ns, out, err, stdin or sys.stdin)
        if ns.command == "demo":
            from .demo import run_demo

            return run_demo(out)
        if ns.command in _COMMANDS:
            module = importlib.import_module(f".commands.{_COMMANDS[ns.command]}", __package__)
            handlers = [(signum, signal.getsignal(signum)) for signum in STOP_SIGNALS]
            put_back = client_logging(ns.command, err) if ns.command in _ONE_SESSION else None
            try:
                status: int = module.run(ns, out, err)
            finally:
                if put_back is not None:
                    put_back()
                if not exiting:
                    _put_back(handlers)
            return status
        parser.print_help(out)
        return EXIT_OK
    except BrokenPipeError:
        return EXIT_OK
    except CommandError as exc:
        if isinstance(exc, Terminated):
            status = EXIT_TERMINATED
        else:
            status = EXIT_BAD_INPUT if isinstance(exc, UsageMistake) else 1
        return _failed(ns, out, err, f"sessionlayer {ns.command}", str(exc), status)
    except UsageError as exc:
        return _failed(ns, out, err, "sessionlayer", str(exc), EXIT_BAD_INPUT)
    except (SessionLayerError, OSError, TimeoutError) as exc:
        if ns.command == "decode":  # (what it was given does not decode)
            return _failed(ns, out, err, "sessionlayer", _said(exc), EXIT_BAD_INPUT)
        return _failed(ns, out, err, f"sessionlayer {ns.command}", _said(exc), 1)
    except KeyboardInterrupt:
        return _failed(ns, out, err, "sessionlayer", "interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # a bug of ours: one line, the traceback only when asked for
        if debugging():
            raise
        return _failed(ns, out, err, f"sessionlayer {ns.command}",
                       f"internal error: {type(exc).__name__}: {exc} (SESSIONLAYER_DEBUG=1"
                       " shows the traceback; please report it)", EXIT_INTERNAL)  # fmt: skip


def _failed(ns: argparse.Namespace, out: TextIO, err: TextIO, who: str, message: str,
            status: int) -> int:  # fmt: skip
    """The one line on stderr that says why the command failed; with ``--json`` (send,
    get, status) also ``{"error": ..., "exit": ...}`` on stdout, so that a script reading
    stdout gets an answer either way; the exit status."""
    err.write(f"{who}: {message}\n")
    if getattr(ns, "json", False) and ns.command in _ONE_SESSION:
        with contextlib.suppress(OSError, ValueError):  # (a reader that went)
            out.write(json.dumps({"error": message, "exit": status}) + "\n")
            out.flush()
    return status


def _put_back(handlers: Sequence[tuple[signal.Signals, Any]]) -> None:
    """The signal handlers a command changed (a serving one's :func:`~.commands.stopped`)
    as they were before it ran."""
    for signum, handler in handlers:
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)


def _said(exc: BaseException) -> str:
    """One line for an error of the environment: an OSError names its file."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return str(exc) or type(exc).__name__


def exit_with(status: int) -> NoReturn:
    """Exit the process with ``status``; after an interrupt, a second Ctrl-C does not
    interrupt the joins of the threads still finishing (a traceback at exit)."""
    if status == EXIT_INTERRUPTED:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)
