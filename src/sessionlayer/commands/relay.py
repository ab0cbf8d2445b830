"""``sessionlayer relay``: the session-aware relay between two OSI stacks (docs/relay.md).

Every mistake a user can make (a bad address, a missing or unreadable certificate, a port
in use, a bad rule) ends in one line on stderr and a non-zero exit status
(:class:`~sessionlayer.commands.CommandError`), never a traceback.  The relay runs until
SIGINT or SIGTERM, then aborts the sessions it holds and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import ssl
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Literal, TextIO

from ..aio.sockets import host_port
from ..relay.options import RelayOptions
from ..relay.policy import Policy, Rule
from ..rotation import RotatingFile, parse_size
from . import (
    DEFAULT_PORT,
    AddressError,
    CommandError,
    UsageMistake,
    at_least_one,
    count,
    debugging,
    parse_address,
    positive_seconds,
    seconds_or_never,
    stop_on_signals,
    stopped,
    token_file,
    writable_file,
)
from .logs import ShortExceptions
from .tls import server_context, upstream_context

__all__ = ["add", "run"]

STATUS_PERIOD = 1.0  #: seconds between two writes of ``--status``
#: Where --upstream goes when it names no port: ISO-TSAP, RFC 1006's port.
ISO_TSAP = 102


class _RuleAction(argparse.Action):
    """``--allow`` and ``--deny`` append to one list, in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:  # fmt: skip
        action: Literal["allow", "deny"] = "allow" if option_string == "--allow" else "deny"
        try:
            Rule.parse(action, str(values))  # (a bad rule is a usage mistake: exit 2)
        except ValueError as exc:
            parser.error(f"{option_string} {str(values)!r}: {exc}")
        rules = list(getattr(namespace, "rules", None) or [])
        rules.append((action, str(values)))
        namespace.rules = rules


def add(sub: Any) -> None:
    """The ``relay`` subcommand, on the subparsers of the ``sessionlayer`` parser."""
    p = sub.add_parser(
        "relay",
        help="relay OSI sessions between a client and an upstream, checking every SPDU",
        description=(
            "A session-aware relay: terminates the session toward the client (responder) and"
            " toward the upstream (initiator) with sessionlayer's protocol machine and relays"
            " the X.215 services between them. Runs until SIGINT or SIGTERM."
        ),
    )
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help=f"where to listen (port 0: any free port, printed at start; "
                        f"default port {DEFAULT_PORT})")  # fmt: skip
    p.add_argument("--upstream", required=True, metavar="HOST:PORT",
                   help=f"the OSI peer (default port {ISO_TSAP})")
    p.add_argument("--tls-cert", metavar="FILE", help="TLS on the listening leg: certificate")
    p.add_argument("--tls-key", metavar="FILE", help="... and its private key")
    p.add_argument("--client-ca", metavar="FILE",
                   help="require client certificates signed by these CAs (mutual TLS)")
    p.add_argument("--upstream-tls", action="store_true", help="TLS toward the upstream")
    p.add_argument("--upstream-ca", metavar="FILE",
                   help="CAs that sign the upstream's certificate (default: the system's)")
    p.add_argument("--upstream-name", metavar="NAME",
                   help="the name the upstream's certificate must carry (default: its host)")
    p.add_argument("--upstream-cert", metavar="FILE", help="a client certificate toward the"
                   " upstream, for one that asks for it (mutual TLS, IEC 62351-3)")
    p.add_argument("--upstream-key", metavar="FILE", help="... and its private key")
    p.add_argument("--log", metavar="FILE",
                   help="one JSON line per SPDU each way on each leg ('-': standard output)")
    p.add_argument("--pcap", metavar="FILE",
                   help="both legs as seen on the wire (before TLS), as a pcap file")
    p.add_argument("--rotate-size", type=_size, metavar="SIZE",
                   help="start a new --log or --pcap file when it reaches SIZE (octets, or "
                        "with k, M, G: 100M); the old one becomes FILE.1, and so on (default: "
                        "never; SIGHUP starts a new file too, after logrotate moved it)")
    p.add_argument("--rotate-keep", type=count, default=5, metavar="N",
                   help="old files kept by --rotate-size (default: 5)")
    p.add_argument("--status", metavar="FILE",
                   help=f"rewrite FILE every {STATUS_PERIOD:g} s with the sessions, as JSON")
    p.add_argument("--admin", metavar="HOST:PORT",
                   help="serve /sessions (JSON, both legs) and /metrics (Prometheus) here; "
                        "sessionlayer status HOST:PORT shows them")  # fmt: skip
    p.add_argument("--admin-token", metavar="FILE", help="a file whose first line is the"
                   " bearer token --admin asks of every request")  # fmt: skip
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="info", help="what the relay says on stderr (default: info)")
    defaults = RelayOptions()
    p.add_argument("--max-sessions", type=at_least_one, default=defaults.max_sessions,
                   metavar="N")
    p.add_argument("--max-handshakes", type=at_least_one, default=defaults.max_handshakes,
                   metavar="N")
    p.add_argument("--max-size", type=_tsdu_size, default=defaults.max_size,
                   metavar="OCTETS", help="largest TSDU and SSDU on either leg")
    p.add_argument("--idle-timeout", type=seconds_or_never, default=defaults.idle_timeout,
                   metavar="S", help="abort a session silent on both legs this long (between"
                   " sessionlayer peers: on one leg, probed after half of it; 0: never)")
    p.add_argument("--handshake-timeout", type=positive_seconds,
                   default=defaults.handshake_timeout, metavar="S")
    p.add_argument("--connect-timeout", type=positive_seconds,
                   default=defaults.connect_timeout, metavar="S")
    p.add_argument("--release-timeout", type=positive_seconds,
                   default=defaults.release_timeout, metavar="S")
    p.add_argument("--abort-timeout", type=positive_seconds, default=defaults.abort_timeout,
                   metavar="S")
    p.add_argument("--allow", action=_RuleAction, metavar="RULE",
                   help="allow peer=NET,calling=HEX,called=HEX,calling_tsap=HEX,called_tsap=HEX"
                        " (first match decides)")
    p.add_argument("--deny", action=_RuleAction, metavar="RULE", help="deny (same syntax)")
    p.set_defaults(rules=[])


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(text: str, what: str, default_port: int, *, listen: bool = False
             ) -> tuple[str, int]:  # fmt: skip
    """``HOST:PORT``, ``HOST``, ``[V6]:PORT``; AddressError naming the option otherwise."""
    try:
        host, port = parse_address(text, default_port=default_port, listen=listen)
    except CommandError as exc:
        raise AddressError(f"{what}: {exc}") from None
    if ":" in host and not text.startswith("["):
        raise AddressError(f"{what} {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    if not host or any(c.isspace() for c in host):
        raise AddressError(f"{what} {text!r}: expected HOST:PORT")
    return host, port


def _tsdu_size(text: str) -> int:
    """``--max-size``: octets, at least what a leg's ``Options.max_tsdu_size`` takes (it was
    exit status 1 and "max-size must be at least 64", the option without its dashes)."""
    from ..agent.options import MIN_TSDU_SIZE

    size = at_least_one(text)
    if size < MIN_TSDU_SIZE:
        raise argparse.ArgumentTypeError(f"at least {MIN_TSDU_SIZE} octets, not {size}")
    return size


def _options(ns: argparse.Namespace) -> RelayOptions:
    try:
        return RelayOptions(
            handshake_timeout=ns.handshake_timeout,
            connect_timeout=ns.connect_timeout,
            idle_timeout=ns.idle_timeout or None,
            release_timeout=ns.release_timeout,
            abort_timeout=ns.abort_timeout,
            max_sessions=ns.max_sessions,
            max_handshakes=ns.max_handshakes,
            max_size=ns.max_size,
        )
    except ValueError as exc:  # (the option's name for a field's: not every "_" replaced)
        said = str(exc)
        for name in ("handshake_timeout", "connect_timeout", "idle_timeout", "release_timeout",
                     "abort_timeout", "max_sessions", "max_handshakes", "max_size"):  # fmt: skip
            said = said.replace(name, "--" + name.replace("_", "-"))
        raise UsageMistake(said) from None


def _policy(ns: argparse.Namespace) -> Policy:
    rules = []
    for action, text in ns.rules:
        try:
            rules.append(Rule.parse(action, text))
        except ValueError as exc:
            raise CommandError(f"--{action} {text!r}: {exc}") from None
    return Policy.from_rules(rules)


class _JsonLines:
    """``--log``: one JSON object per line, flushed at once (into a file: rotated at
    ``max_bytes``, and started again by :meth:`reopen`)."""

    def __init__(self, target: str, stdout: TextIO, max_bytes: int | None = None,
                 keep: int = 5) -> None:  # fmt: skip
        self.stdout = stdout
        self.stdout_failed = False
        self.file: RotatingFile | None = None
        if target != "-":
            try:
                self.file = RotatingFile(target, max_bytes=max_bytes, keep=keep, what="--log")
            except OSError as exc:
                raise CommandError(f"--log {target}: {exc.strerror or exc}") from None

    def __call__(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if self.file is None:
            if self.stdout_failed:
                return
            try:
                self.stdout.write(line)
                self.stdout.flush()
            except OSError as exc:  # (its reader went away: EPIPE)
                self._stdout_gone(exc)
            return
        self.file.write(line.encode())
        self.file.flush()
        self.file.rotate_if_full("--log")

    def _stdout_gone(self, exc: OSError) -> None:
        """``--log -`` and standard output cannot be written: said once, and the relay goes
        on without the log.  Standard output then points at /dev/null, so that what is
        still buffered does not fail again at the exit."""
        self.stdout_failed = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stdout.fileno())
            finally:
                os.close(devnull)
        logging.getLogger("sessionlayer").warning(
            "--log -: cannot write: %s; not written from now on", exc.strerror or exc)

    def reopen(self) -> None:
        if self.file is not None:
            self.file.reopen()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _logging(level: str, err: TextIO) -> logging.Handler:
    """The relay's decisions (``sessionlayer`` loggers) as lines on stderr."""
    handler = logging.StreamHandler(err)
    handler.setFormatter(ShortExceptions("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("sessionlayer")
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level.upper()))
    return handler


def run(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the relay until SIGINT/SIGTERM; the exit status."""
    listen = _address(ns.listen, "--listen", DEFAULT_PORT, listen=True)
    upstream = _address(ns.upstream, "--upstream", ISO_TSAP)  # (port 0 refused there)
    options, policy = _options(ns), _policy(ns)
    tls, upstream_tls = server_context(ns), upstream_context(ns)
    if ns.admin_token and not ns.admin:
        raise UsageMistake("--admin-token needs --admin")
    token = token_file(ns.admin_token, "--admin-token") if ns.admin_token else None
    for name in ("status", "log", "pcap"):  # (before any is opened: a FIFO blocks that)
        if getattr(ns, name):
            writable_file(getattr(ns, name), f"--{name}")
    if ns.status:
        _check_status(Path(ns.status))
    rotation = {"max_bytes": ns.rotate_size, "keep": ns.rotate_keep}
    spdu_log = _JsonLines(ns.log, out, **rotation) if ns.log else None
    pcap = None
    try:
        if ns.pcap:
            from ..capture import PcapWriter

            try:
                pcap = PcapWriter(ns.pcap, **rotation)
            except OSError as exc:
                raise CommandError(f"--pcap {ns.pcap}: {exc.strerror or exc}") from None
        relay_args: dict[str, Any] = dict(options=options, policy=policy, upstream_tls=upstream_tls,
                                          upstream_hostname=ns.upstream_name, on_spdu=spdu_log,
                                          pcap=pcap)  # fmt: skip
        handler = _logging(ns.log_level, err)
        try:
            watch = (ns.status, _address(ns.admin, "--admin", 0, listen=True) if ns.admin else None,
                     token)  # fmt: skip
            return asyncio.run(_serve(listen, upstream, tls, relay_args, watch, err))
        finally:
            logging.getLogger("sessionlayer").removeHandler(handler)
    finally:
        if pcap is not None:
            pcap.close()
        if spdu_log is not None:
            spdu_log.close()


async def _serve(listen: tuple[str, int], upstream: tuple[str, int],
                 tls: ssl.SSLContext | None, relay_args: dict[str, Any],
                 watch: tuple[str | None, tuple[str, int] | None, str | None],
                 err: TextIO) -> int:  # fmt: skip
    """Relay until SIGINT/SIGTERM; ``watch`` is (--status FILE, --admin address, its
    token)."""
    from ..relay.server import Relay

    status, admin, token = watch
    relay = Relay(upstream, **relay_args)
    try:
        await relay.listen(listen[0], listen[1], tls)
    except OSError as exc:
        where = host_port(listen[0], listen[1])
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(f"cannot listen on {where}: the port is in use") from None
        raise CommandError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stop_on_signals(loop, stop, "relay")  # (before the banner: a stop may follow it)
    if relay_args["on_spdu"] is not None or relay_args["pcap"] is not None:
        loop.add_signal_handler(signal.SIGHUP, _reopen, relay_args, err)  # (else: a stop)
    # (--admin before the banner: once it says it listens, it has all it needs)
    runner = await _admin(relay, admin, token, err) if admin is not None else None
    addresses = ", ".join(host_port(h, p) for h, p in relay.addresses)
    err.write(f"sessionlayer relay: listening on {addresses}{' (TLS)' if tls else ''}, "
              f"relaying to {host_port(upstream[0], upstream[1])}"
              f"{' (TLS)' if relay_args['upstream_tls'] else ''}\n")  # fmt: skip
    err.flush()
    writer = loop.create_task(_write_status(relay, Path(status))) if status else None
    try:
        await stop.wait()
    finally:  # (the signals that come now are ignored: the stop goes on to its end)
        try:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            relay.close()
            limit = relay.options.abort_timeout + 1.0
            try:
                await asyncio.wait_for(relay.wait_closed(), limit)
            except TimeoutError:
                err.write(f"sessionlayer relay: sessions still open after {limit} s,"
                          " exiting\n")  # fmt: skip
            if runner is not None:
                await runner.cleanup()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)  # (False for one never added)
            stopped(loop)
    if status:
        why = _status_now(relay, Path(status), stopped=True)
        if why is not None:
            err.write(why + "\n")
    stats = relay.stats  # (relayed: reached data transfer; a refused CN never did)
    refused = f", {stats.ended['refused']} refused" if stats.ended["refused"] else ""
    err.write(f"sessionlayer relay: stopped ({stats.opened} sessions relayed{refused})\n")
    return 0


def _reopen(relay_args: dict[str, Any], err: TextIO) -> None:
    """SIGHUP: the --log and --pcap files again (a new one each if logrotate moved it)."""
    for option, target in (("--log", relay_args["on_spdu"]), ("--pcap", relay_args["pcap"])):
        if target is None:
            continue
        try:
            target.reopen()
        except Exception as exc:  # (OSError; anything else: said, never the loop's)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
            err.write(f"sessionlayer relay: {option}: cannot open it again: {why};"
                      " not written from now on\n")  # fmt: skip
            err.flush()


async def _admin(relay: Any, address: tuple[str, int], token: str | None,
                 err: TextIO) -> Any:  # fmt: skip
    """``--admin``: the relay's /sessions and /metrics (the admin extra)."""
    from .admin import start_relay_admin

    try:
        runner = await start_relay_admin(relay, *address, token)
    except CommandError:
        relay.close()
        await relay.wait_closed()
        raise
    bound = runner.addresses[0]
    err.write(f"sessionlayer relay: admin on http://{host_port(bound[0], bound[1])}\n")
    return runner


def _check_status(path: Path) -> None:
    """``--status``: writable where it is to be written (said at start, not every second)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        tmp.write_text("", encoding="utf-8")
        tmp.unlink()
    except OSError as exc:
        raise CommandError(f"--status {path}: {exc.strerror or exc}") from None


def _status_now(relay: Any, path: Path, stopped: bool = False) -> str | None:
    """``--status``: what ``--admin`` serves at /sessions, with the time, into ``path``;
    why it could not be written, or None."""
    from .admin import relay_json

    document = {"time": time.time(), **relay_json(relay), "stopped": stopped}
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        return f"sessionlayer relay: --status {path}: {exc.strerror or exc}"
    return None


async def _write_status(relay: Any, path: Path) -> None:
    """``--status`` every STATUS_PERIOD: a file that cannot be written is said once (not
    every second), and again once it is written again."""
    said = failing = False
    while True:
        try:
            why = _status_now(relay, path)
            if why is not None and not failing:
                sys.stderr.write(f"{why}; tried again every {STATUS_PERIOD:g} s, said once\n")
            elif why is None and failing:
                sys.stderr.write(f"sessionlayer relay: --status {path}: written again\n")
            failing = why is not None
        except Exception as exc:  # a bug of ours: said once, the relay goes on
            if debugging():
                traceback.print_exc()
            elif not said:
                sys.stderr.write(f"sessionlayer relay: --status {path}: internal error: {exc!r}"
                                 " (SESSIONLAYER_DEBUG=1 shows the traceback; please report"
                                 " it)\n")  # fmt: skip
            said = True
        await asyncio.sleep(STATUS_PERIOD)
