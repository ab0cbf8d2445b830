"""``sessionlayer status [HOST:PORT | --admin URL]``: the live sessions of a server, from
its admin endpoint (``sessionlayer serve --admin``), or the relayed sessions of a relay with
both legs (``sessionlayer relay --admin``): a table refreshed every second on a terminal,
once with ``--once`` (or when not a terminal), JSON with ``--json``."""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

from ..aio.sockets import host_port, unreachable
from . import (
    AddressError,
    CommandError,
    Terminated,
    UsageMistake,
    parse_address,
    printable,
    token_file,
)

__all__ = ["add", "run", "fetch"]

COLUMNS = ("id", "peer", "state", "age", "in", "out", "tokens", "checkpoint",
           "interrupted", "resumed", "activity", "progress")  # fmt: skip
#: A relay's sessions (its /sessions says ``"kind": "relay"``): both legs of each.
RELAY_COLUMNS = ("id", "phase", "client", "client state", "upstream", "upstream state",
                 "client in", "client out", "age", "outcome")  # fmt: skip


def add(sub: Any) -> None:
    p = sub.add_parser("status", help="show a server's live sessions (its --admin endpoint)")
    p.add_argument("address", nargs="?", metavar="HOST:PORT",
                   help="the server's admin address (127.0.0.1:10103)")  # fmt: skip
    p.add_argument("--admin", metavar="URL", help="the admin endpoint's URL instead"
                   " (http://HOST:PORT; HOST:PORT alone is taken as that)")
    p.add_argument("--once", action="store_true", help="print the table once")
    p.add_argument("--json", action="store_true", help="print the JSON once")
    p.add_argument("--admin-token", metavar="FILE", help="a file whose first line is the"
                   " endpoint's bearer token (serve/relay --admin-token)")  # fmt: skip


#: The largest answer to GET /sessions read (about 4 KiB per session: 16,000 sessions).
MAX_ANSWER = 64 << 20


def fetch(url: str, token: str | None = None) -> Any:
    request = urllib.request.Request(url.rstrip("/") + "/sessions")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            length = answer.length  # (Content-Length: read() then checks it came whole)
            if length is not None and length > MAX_ANSWER:
                raise ValueError(f"over {MAX_ANSWER >> 20} MiB")
            raw = answer.read() if length is not None else answer.read(MAX_ANSWER + 1)
            if len(raw) > MAX_ANSWER:
                raise ValueError(f"over {MAX_ANSWER >> 20} MiB")
            data = json.loads(raw)
    except urllib.error.HTTPError as exc:
        if exc.code == 401 and "bearer" in exc.headers.get("WWW-Authenticate", "").lower():
            raise CommandError(f"the admin endpoint {url} refused the token of --admin-token"
                               if token is not None else f"the admin endpoint {url} asks for"
                               " a token: --admin-token FILE") from None  # fmt: skip
        # (it was "cannot reach": it answered, no)
        raise CommandError(f"{url} is not a sessionlayer admin endpoint (GET /sessions:"
                           f" HTTP {exc.code} {printable(str(exc.reason))[:80]})"
                           ) from None  # fmt: skip
    except urllib.error.URLError as exc:  # (its reason: an OSError was "[Errno 111] ...")
        why = unreachable(exc.reason) if isinstance(exc.reason, BaseException) else exc.reason
        raise CommandError(f"cannot reach the admin endpoint {url}: {why}") from None
    except TimeoutError:  # (after the connect: it was "bad answer ...: timed out")
        raise CommandError(f"the admin endpoint {url} did not answer within 5 s") from None
    except http.client.IncompleteRead as exc:
        raise CommandError(f"bad answer from the admin endpoint {url}: cut short"
                           f" ({len(exc.partial)} octets of its answer came)") from None
    except OSError as exc:  # (it was "[Errno 104] Connection reset by peer")
        raise CommandError(f"bad answer from the admin endpoint {url}:"
                           f" {exc.strerror or exc} (is it an HTTP server?)") from None
    except http.client.HTTPException as exc:  # (what it sent, repr'd: control characters)
        raise CommandError(f"bad answer from the admin endpoint {url}: not HTTP"
                           f" ({type(exc).__name__}: {printable(str(exc))[:80]})") from None
    except (ValueError, RecursionError) as exc:  # (JSON nested too deep: RecursionError)
        why = "nested too deep" if isinstance(exc, RecursionError) else printable(str(exc))[:80]
        raise CommandError(f"bad answer from the admin endpoint {url}: {why}") from None
    try:  # (the answer's shape, before anything is shown of it)
        _table(data)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError):
        raise CommandError(f"{url} is not a sessionlayer admin endpoint (its /sessions"
                           " is not a list of sessions)") from None  # fmt: skip
    return data


def _octets(n: int) -> str:
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _progress(progress: dict[str, Any]) -> str:
    """The progress column: a transfer's percentage; a tunnel's streams (open/carried)
    and octets toward and from the target; RPC calls."""
    if progress.get("service") == "tunnel":
        return (f"tunnel {progress.get('streams', 0)}/{progress.get('opened', 0)}"
                f" up {_octets(progress.get('to_target', 0))}"
                f" down {_octets(progress.get('from_target', 0))}")  # fmt: skip
    if progress.get("service") == "rpc":
        return (f"rpc {progress.get('calls', 0)} calls {progress.get('running', 0)}"
                f" running {progress.get('errors', 0)} errors")  # fmt: skip
    if progress.get("size") is not None:
        return f"{progress['name']} {100 * progress['done'] // max(progress['size'], 1)} %"
    return ""


def _rows(data: Any) -> list[list[str]]:
    rows = []
    for s in data.get("sessions", []):
        done = _progress(s.get("progress") or {})
        rows.append([
            s["id"][:12], s.get("peer") or "", s["state"], f"{s['age']:.0f}s",
            str(s["bytes_in"]), str(s["bytes_out"]), str(s["tokens"]),
            "" if s.get("checkpoint") is None else str(s["checkpoint"]),
            str(s.get("interruptions", 0)), str(s.get("resumes", 0)),
            s.get("activity") or "", done,
        ])  # fmt: skip
    return rows


def _relay_rows(data: Any) -> list[list[str]]:
    rows = []
    for s in data.get("sessions", []):
        client, upstream = s["client"], s.get("upstream") or {}
        rows.append([
            s["id"][:12], s["phase"], client.get("peer") or "", client["state"],
            upstream.get("peer") or "", upstream.get("state", ""), str(client["bytes_in"]),
            str(client["bytes_out"]), f"{s['age']:.0f}s", s.get("outcome") or "",
        ])  # fmt: skip
    return rows


def _table(data: Any) -> Any:
    from rich.table import Table
    from rich.text import Text

    count = len(data.get("sessions", []))
    columns: tuple[str, ...]
    if data.get("kind") == "relay":
        title = f"{count} relayed sessions (to {data.get('upstream')})"
        columns, rows = RELAY_COLUMNS, _relay_rows(data)
    else:
        title, columns, rows = f"{count} sessions", COLUMNS, _rows(data)
    # Text, not str: no rich markup in what the endpoint sent ("[/x]" in a file name made
    # rich raise MarkupError), and printable(): no terminal escapes either.
    table = Table(title=Text(printable(title)))
    for column in columns:  # (folded, never cut: "1…" for 1,234 read as another number)
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(printable(str(cell))) for cell in row))
    return table


def admin_url(text: str) -> str:
    """``--admin``: an http:// or https:// URL (its ``/sessions`` page too, which is what
    is asked of it), or HOST:PORT for http://HOST:PORT; a usage
    mistake (:class:`UsageMistake`, exit status 2) for anything else: another scheme, no
    host, a port that is not one, an IPv6 address out of brackets."""
    scheme, sep, _ = text.partition("://")
    if not sep:
        try:
            host, port = parse_address(text, default_port=10103)
        except AddressError as exc:
            raise AddressError(f"--admin {exc}") from None
        return f"http://{host_port(host, port)}"
    if scheme.lower() not in ("http", "https"):
        raise UsageMistake(f"--admin {text}: not an http:// or https:// URL (or HOST:PORT)")
    try:
        parts = urllib.parse.urlsplit(text)
        good = bool(parts.hostname) and parts.port != 0 and "@" not in parts.netloc
    except ValueError:  # (a port that is not a number or past 65535; "[::1")
        good = False
    if not good:
        raise UsageMistake(f"--admin {text}: expected {scheme}://HOST[:PORT], PORT 1 to"
                           " 65535 (an IPv6 HOST in brackets)")
    path = parts.path.rstrip("/")
    if path.endswith("/sessions"):  # (the endpoint's page itself: its base is what is
        # asked, /sessions added; it was asked for .../sessions/sessions, a 404)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc,
                                        path.removesuffix("/sessions"), parts.query,
                                        parts.fragment))  # fmt: skip
    return text


def run(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if ns.admin and ns.address:
        raise UsageMistake(f"give HOST:PORT ({ns.address}) or --admin, not both")
    if ns.admin:
        url = admin_url(ns.admin)
    else:
        host, port = parse_address(ns.address, default_port=10103)
        url = f"http://{host_port(host, port)}"
    token = token_file(ns.admin_token, "--admin-token") if ns.admin_token else None
    if ns.json:
        out.write(json.dumps(fetch(url, token)) + "\n")
        return 0
    from rich.console import Console

    console = Console(file=out, width=None if out.isatty() else 160)
    if ns.once or not out.isatty():
        console.print(_table(fetch(url, token)))
        return 0
    from rich.live import Live

    def terminated(signum: int, frame: Any) -> None:  # (raised in the Live block: the
        raise Terminated("terminated (SIGTERM)")  # cursor it hid is shown again)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        with Live(_table(fetch(url, token)), console=console, refresh_per_second=2) as live:
            while True:  # (until Ctrl-C: the CLI reports "interrupted")
                time.sleep(1.0)
                live.update(_table(fetch(url, token)))
    finally:
        signal.signal(signal.SIGTERM, previous)
