"""Remote procedure calls over sessions: each call runs exactly once, across lost
connections.

The server side is a :class:`Registry` of methods served by :func:`rpc_handler` (or
:class:`RpcServer`), the client side an :class:`RpcClient` around a session::

    registry = Registry()

    @registry.method
    async def add(a: int, b: int) -> int:
        return a + b

    server = await sessionlayer.serve(rpc_handler(registry), supported=RPC_SUPPORTED)
    async with await rpc_connect("127.0.0.1", server.port) as rpc:
        assert await rpc.call("add", 2, 3, timeout=5) == 5

Each S-DATA message is one frame::

    type (1 octet) | call id (8 octets, big-endian) | body (the codec's encoding)

======  ==================================  ==========================================
type    body                                meaning
======  ==================================  ==========================================
``C``   ``[name, args, kwargs, timeout]``   (client) a call; ``kwargs`` and ``timeout``
                                            (seconds) may be null
``R``   the result                          (server) the call returned
``E``   ``[type name, message]``            (server) the call raised (or was refused:
                                            ``MethodNotFound``, ``BadRequest``, ``Busy``,
                                            ``Timeout``, ``TooLarge``)
``X``   --                                  (client) cancel the call
======  ==================================  ==========================================

Why exactly once: the session below delivers every S-DATA message exactly once and in
order across lost connections (docs/recovery.md, case 1), so a call sent before a drop
reaches the server once, and its result reaches the client once after the resume.  The
server also remembers the ids it has seen (each session's ids only grow) and never runs
one twice; the client takes only the first answer to a call.  A server that lost its
state (restarted: case 2) cannot say whether a call in flight ran: those calls fail with
:class:`CallLost`, and the session goes on for new calls.

The codec is agreed at connect (``rpc-codec``): JSON by default, msgpack (the ``msgpack``
extra) when both sides have it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import importlib
import inspect
import json
import logging
import math
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..aio import ConnectRequest, Options, Session, connect
from ..errors import CheckpointRestored, SessionAborted, SessionClosed, SessionLayerError

__all__ = [
    "SERVICE",
    "RPC_SUPPORTED",
    "Registry",
    "RpcServer",
    "RpcClient",
    "RpcStats",
    "rpc_handler",
    "rpc_connect",
    "codecs",
    "RpcError",
    "RemoteCallError",
    "CallTimeout",
    "CallLost",
]

log = logging.getLogger("sessionlayer")

SERVICE = "rpc"  #: the application parameter ``service`` that selects RPC
CODEC = "rpc-codec"  #: the application parameter that picks the codec

_HEAD = struct.Struct(">cQ")
_HEAD_SIZE = _HEAD.size
_CALL, _RESULT, _ERROR, _CANCEL = b"C", b"R", b"E", b"X"
#: Room left in a TSDU for the SPDU headers around a frame (GT and DT take 4 octets; the
#: rest is margin), so that a frame of ``max_tsdu_size - _SPDU_ROOM`` octets is taken whole.
_SPDU_ROOM = 64
#: The peer's ``Options.max_tsdu_size`` unless told otherwise (its default, 1 MiB).
_DEFAULT_TSDU = Options().max_tsdu_size
#: The smallest ``max_tsdu_size`` RPC takes: room for any error answer (its type name and
#: message are cut to 256 and 4,096 characters, at most 6 octets each in JSON).
_MIN_TSDU = 1 << 15


def _max_frame(max_tsdu_size: int) -> int:
    """The largest frame one S-DATA may carry to a peer whose ``Options.max_tsdu_size`` is
    ``max_tsdu_size``: past it the peer would abort the whole session, and every call in
    flight with it."""
    if type(max_tsdu_size) is not int or max_tsdu_size < _MIN_TSDU:
        raise ValueError(f"max_tsdu_size must be an int >= {_MIN_TSDU}, not {max_tsdu_size!r}")
    return max_tsdu_size - _SPDU_ROOM


def _valid_timeout(timeout: object) -> bool:
    """None, or a finite number >= 0 (not a bool): a NaN given to ``asyncio.timeout``
    corrupts the loop's timer heap for the whole process; inf is spelt None."""
    if timeout is None:
        return True
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        return False
    try:
        return math.isfinite(timeout) and timeout >= 0
    except OverflowError:  # (an int too large for a float)
        return False


# ---------------------------------------------------------------------------- errors


class RpcError(SessionLayerError):
    """Base class of the errors a call raises besides the session's own."""


class RemoteCallError(RpcError):
    """The remote method raised (or the server refused the call): ``.type`` is the
    remote exception's class name (``"ValueError"``; ``"MethodNotFound"``,
    ``"BadRequest"``, ``"Busy"``, ``"Timeout"``, ``"TooLarge"`` from the server itself),
    ``.message`` its text."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type = type_name
        self.message = message


class CallTimeout(RpcError, TimeoutError):
    """No answer within the call's ``timeout``; the server was told to cancel it."""


class CallLost(RpcError):
    """The call was sent, but its answer can never come: the session ended, or the
    server lost its state (a restart).  Whether it ran is unknown (at most once)."""


# ---------------------------------------------------------------------------- codecs


@dataclass(frozen=True)
class _Codec:
    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _json_codec() -> _Codec:
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

    def encode(obj: Any) -> bytes:
        return encoder.encode(obj).encode()

    return _Codec("json", encode, json.loads)


def _msgpack_codec() -> _Codec | None:
    try:
        msgpack = importlib.import_module("msgpack")
    except ImportError:
        return None
    packer = functools.partial(msgpack.packb, use_bin_type=True)
    unpacker = functools.partial(msgpack.unpackb, raw=False)
    return _Codec("msgpack", packer, unpacker)


@functools.cache
def _codecs() -> dict[str, _Codec]:
    found = {"json": _json_codec()}
    packed = _msgpack_codec()
    if packed is not None:
        found["msgpack"] = packed
    return found


def codecs() -> list[str]:
    """The codecs this process can use, best first (``msgpack`` needs its extra)."""
    return sorted(_codecs(), key=lambda name: name != "msgpack")


#: ``serve(..., supported=RPC_SUPPORTED)``: the RPC service and the codecs known here.
RPC_SUPPORTED: dict[str, list[str]] = {"service": [SERVICE], CODEC: codecs()}


def _codec_of(session: Session) -> _Codec:
    return _codecs().get(session.chosen.get(CODEC, "json"), _codecs()["json"])


# ---------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class _Method:
    fn: Callable[..., Any]
    is_async: bool
    thread: bool


class Registry:
    """Named methods a server offers.  ``@registry.method`` (or ``@registry.method(name=
    "x", thread=True)``), or ``registry.register(name, fn)``.

    A coroutine function runs as a task of its own (it may be cancelled and time out); a
    plain function runs inline on the event loop (it must be quick and not block), or
    with ``thread=True`` in a worker thread of the :class:`RpcServer` (a timeout or a
    cancel stops waiting for it, not the thread).
    """

    def __init__(self) -> None:
        self.methods: dict[str, _Method] = {}

    def register(self, name: str, fn: Callable[..., Any], *, thread: bool = False) -> None:
        if not name or not callable(fn):
            raise ValueError("a method needs a name and a callable")
        if name in self.methods:
            raise ValueError(f"method {name!r} registered twice")
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            type(fn).__call__)  # (an object whose __call__ is a coroutine function)
        if thread and is_async:
            raise ValueError(f"method {name!r}: thread=True is for plain functions")
        self.methods[name] = _Method(fn, is_async, thread)

    def method(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
               thread: bool = False) -> Any:  # fmt: skip
        """Decorator: register ``fn`` under ``name`` (its own name by default)."""

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            self.register(name or func.__name__, func, thread=thread)
            return func

        return decorate(fn) if fn is not None else decorate

    def __contains__(self, name: object) -> bool:
        return name in self.methods

    def __len__(self) -> int:
        return len(self.methods)


# ---------------------------------------------------------------------------- the server


@dataclass
class RpcStats:
    """Counters of an RPC server, or of one of its sessions."""

    calls: int = 0  #: calls received (duplicates not counted)
    ok: int = 0  #: returned a result
    errors: int = 0  #: raised, or refused (unknown method, bad request)
    timeouts: int = 0  #: ran past their timeout
    cancelled: int = 0  #: cancelled by the client
    duplicates: int = 0  #: ids seen before (never run again)
    running: int = 0  #: running now
    sessions: int = 0
    waiting: int = 0  #: waiting for a slot now (past ``max_running``)

    def add(self, other: RpcStats) -> None:
        for name in ("calls", "ok", "errors", "timeouts", "cancelled", "duplicates",
                     "sessions"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(slots=True)
class _Call:
    """A call to a coroutine or thread method, decoded: running, or waiting for a slot."""

    cid: int
    method: _Method
    args: list[Any]
    kwargs: dict[str, Any] | None
    timeout: float | None
    size: int  #: the octets of its frame (what a waiting call counts against the limit)
    #: (waiting) its body as it came, decoded again when it starts: a waiting call holds
    #: the octets it is counted by, not their decoded objects (many times as large)
    body: bytes | None = None
    #: (a plain method's) the awaitable it returned inline, awaited as the call's task
    started: Awaitable[Any] | None = None


class _Served:
    """One session's calls on the server."""

    def __init__(self, session: Session, codec: _Codec, max_frame: int) -> None:
        self.session = session
        self.codec = codec
        self.max_frame = max_frame
        self.stats = RpcStats(sessions=1)
        self.running: dict[int, asyncio.Task[None]] = {}
        #: the calls past ``max_running``, oldest first: they wait here, not in the reader,
        #: so that the frames behind them (a cancel of one of them, say) are read on
        self.waiting: collections.OrderedDict[int, _Call] = collections.OrderedDict()
        self.waiting_bytes = 0
        self.running_bytes = 0  #: the frames of the running calls (their arguments decoded)
        self.over = False  #: the session ended: no waiting call starts any more
        #: every id up to it was seen (a client sends its ids in increasing order, and the
        #: session keeps the order)
        self.highest = 0
        #: the answers of the last calls (for a duplicate)
        self.answers: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.answer_bytes = 0
        self.cancelled: set[int] = set()


class RpcServer:
    """Serves a :class:`Registry` on sessions: ``serve(RpcServer(registry).handle, ...)``
    (or ``serve(rpc_handler(registry), ...)``).

    ``max_running`` bounds the calls running at once per session, and
    ``max_running_bytes`` the octets of their frames (whose decoded arguments the calls
    hold: a frame of 1 MiB of ``[[],[],...]`` decodes to about 21 MiB; one call always
    runs, whatever its size).  A call past either waits
    for a slot in a queue of its session, while the session is read on (so a cancel
    reaches a waiting call too): at most ``max_waiting`` calls, of at most
    ``max_waiting_bytes`` octets of frames.  A call past that is refused at once, with a
    ``Busy`` error (it did not run).  ``remember`` is how many answered call ids a session
    keeps with their answers (at most ``remember_bytes`` of them) to answer a duplicate
    without running it again; older duplicates are dropped.

    ``thread=True`` methods run in ``max_threads`` worker threads of this server's own,
    shared by its sessions (a stuck method holds one of them, never the loop's default
    executor, which the rest of the process needs: ``getaddrinfo``, ``to_thread``).
    :meth:`close` shuts them down.

    ``max_tsdu_size`` is the clients' ``Options.max_tsdu_size`` (the default's, 1 MiB): a
    result whose frame would not fit is answered ``TooLarge`` instead (the client would
    abort the session on it).
    """

    def __init__(self, registry: Registry, *, max_running: int = 1000,
                 max_waiting: int = 1000, max_waiting_bytes: int = 16 << 20,
                 max_running_bytes: int = 16 << 20,
                 remember: int = 1024, remember_bytes: int = 1 << 20,
                 max_threads: int = 16,
                 max_tsdu_size: int = _DEFAULT_TSDU) -> None:  # fmt: skip
        if (max_running < 1 or max_threads < 1 or max_waiting < 0 or max_waiting_bytes < 0
                or max_running_bytes < 0):  # fmt: skip
            raise ValueError("max_running and max_threads must be >= 1, max_waiting,"
                             " max_waiting_bytes and max_running_bytes >= 0")  # fmt: skip
        self.registry = registry
        self.max_frame = _max_frame(max_tsdu_size)  #: the largest answer frame that may go
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.max_waiting_bytes = max_waiting_bytes
        self.max_running_bytes = max_running_bytes
        self.remember = remember
        self.remember_bytes = remember_bytes
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_threads, thread_name_prefix="sessionlayer-rpc")
        self.ended = RpcStats()  #: of the sessions that have ended
        self.served: dict[str, _Served] = {}

    @property
    def stats(self) -> RpcStats:
        total = RpcStats()
        total.add(self.ended)
        for served in self.served.values():
            total.add(served.stats)
            total.running += len(served.running)
            total.waiting += len(served.waiting)
        return total

    def progress(self, session_id: str) -> dict[str, Any] | None:
        """What ``/sessions`` shows of an RPC session (None: not one)."""
        served = self.served.get(session_id)
        if served is None:
            return None
        s = served.stats
        return {"service": SERVICE, "calls": s.calls, "running": len(served.running),
                "waiting": len(served.waiting), "errors": s.errors, "timeouts": s.timeouts,
                "cancelled": s.cancelled, "codec": served.codec.name}  # fmt: skip

    def check(self, request: ConnectRequest) -> bool:
        """True: nothing to check at connect (every call is checked as it comes); an
        ``authenticate`` callback as it is, as the other services' ``check``."""
        return True

    def close(self) -> None:
        """Shut the worker threads down, without waiting for them (for after the server
        closed): a ``thread=True`` call still waiting for a thread never runs, one running
        runs on to its end.  (A thread stuck for good still keeps the process from exiting,
        as any Python thread does.)"""
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def handle(self, session: Session) -> None:
        """Serve one session's calls until it ends."""
        served = _Served(session, _codec_of(session), self.max_frame)
        self.served[session.id] = served
        events = asyncio.ensure_future(_drain_events(session))
        try:
            await self._serve(served)
        except (SessionClosed, SessionAborted):
            pass
        finally:  # (all of it before the await: the handler may be cancelled there)
            served.over = True
            served.waiting.clear()  # (never started: nothing to answer, or to cancel)
            served.waiting_bytes = 0
            tasks = [events, *served.running.values()]
            for task in tasks:
                task.cancel()
            self.served.pop(session.id, None)
            self.ended.add(served.stats)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, served: _Served) -> None:
        session = served.session
        while True:
            try:
                async for message in session:
                    await self._frame(served, message)
                return
            except CheckpointRestored:  # (the client went back too: new calls only)
                continue

    async def _frame(self, served: _Served, message: bytes) -> None:
        """One frame from the client.  It never waits for a slot (a call past
        ``max_running`` waits in the queue, or is refused): the frames behind it are read."""
        if len(message) < _HEAD_SIZE:
            return
        kind, cid = _HEAD.unpack_from(message)
        if kind == _CANCEL:
            await self._cancel(served, cid)
            return
        if kind != _CALL:
            return
        if cid in served.running or cid <= served.highest:
            await self._duplicate(served, cid)
            return
        served.highest = cid
        served.stats.calls += 1
        try:
            name, args, kwargs, timeout = _decode_call(served.codec, message[_HEAD_SIZE:])
        except Exception as exc:
            await self._answer(served, cid, self._error(served, "BadRequest",
                                                        f"cannot decode the call: {exc}"))
            return
        method = self.registry.methods.get(name)
        if method is None:
            await self._answer(served, cid, self._error(served, "MethodNotFound",
                                                        f"no method {name!r}"))
            return
        if not method.is_async and not method.thread:
            answer = self._inline(served, method, args, kwargs)
            if isinstance(answer, bytes):
                await self._answer(served, cid, answer)
            else:  # (it ran, and returned an awaitable: that is awaited now, past any limit)
                self._start(served, _Call(cid, method, args, kwargs, timeout, len(message),
                                          started=answer))  # fmt: skip
            return
        call = _Call(cid, method, args, kwargs, timeout, len(message))
        if not served.waiting and self._room(served, call.size):
            self._start(served, call)
        elif (len(served.waiting) < self.max_waiting
              and served.waiting_bytes + call.size <= self.max_waiting_bytes):  # fmt: skip
            call.args, call.kwargs, call.body = _NO_ARGS, None, message[_HEAD_SIZE:]
            served.waiting[cid] = call
            served.waiting_bytes += call.size
        else:
            await self._answer(served, cid, self._error(
                served, "Busy", f"{len(served.running)} calls run and {len(served.waiting)}"
                " wait on this session: this one did not run"))

    def _inline(self, served: _Served, method: _Method, args: list[Any],
                kwargs: dict[str, Any] | None) -> bytes | Awaitable[Any]:  # fmt: skip
        """Run a plain method here, on the loop (no task, no await).  Nothing can cancel
        it, so even a CancelledError it raises is its answer.  An awaitable it returns (a
        decorator's wrapper of a coroutine function) is returned, to run as a task."""
        try:
            result = method.fn(*args, **(kwargs or {}))
        except BaseException as exc:  # (SystemExit too: argparse's, it ended the server)
            return self._error(served, type(exc).__name__, _said(exc))
        if inspect.isawaitable(result):
            awaitable: Awaitable[Any] = result
            return awaitable
        return self._result(served, result)

    def _room(self, served: _Served, size: int) -> bool:
        """A call of ``size`` octets of frame may start now (one always may, alone)."""
        running = served.running
        return not running or (len(running) < self.max_running
                               and served.running_bytes + size <= self.max_running_bytes)

    def _start(self, served: _Served, call: _Call) -> None:
        served.running_bytes += call.size
        task = asyncio.ensure_future(self._run(served, call))
        task.add_done_callback(functools.partial(_call_done, served.session))
        served.running[call.cid] = task

    def _start_next(self, served: _Served) -> None:
        """A slot came free: the oldest waiting calls take it (none once the session ended:
        its end cancels the running calls, whose ends must not start others)."""
        while served.waiting and not served.over and self._room(
            served, next(iter(served.waiting.values())).size
        ):
            _, call = served.waiting.popitem(last=False)
            served.waiting_bytes -= call.size
            if call.body is not None:  # (it decoded once: it does again)
                _, call.args, call.kwargs, _ = _decode_call(served.codec, call.body)
                call.body = None
            self._start(served, call)

    async def _cancel(self, served: _Served, cid: int) -> None:
        """The client cancels call ``cid``: a running one's task is cancelled (and it
        answers), a waiting one leaves the queue and is answered here; anything else (done,
        unknown) is ignored."""
        task = served.running.get(cid)
        if task is not None:
            served.cancelled.add(cid)
            task.cancel()
            return
        call = served.waiting.pop(cid, None)
        if call is not None:
            served.waiting_bytes -= call.size
            served.stats.cancelled += 1
            await self._answer(served, cid, self._cancelled(served))

    async def _run(self, served: _Served, call: _Call) -> None:
        cid, timeout = call.cid, call.timeout
        try:
            try:
                async with asyncio.timeout(timeout) as deadline:
                    result = await self._invoke(call)
            except TimeoutError as exc:
                if deadline.expired():
                    served.stats.timeouts += 1
                    answer = self._error(served, "Timeout",
                                         f"the call ran past its timeout ({timeout:g} s)",
                                         count=False)
                else:
                    answer = self._error(served, type(exc).__name__, _said(exc))
            except asyncio.CancelledError as exc:
                if cid in served.cancelled:
                    served.stats.cancelled += 1
                    answer = self._cancelled(served)
                elif _cancelling():
                    raise  # (the session ended: nothing to answer)
                else:  # (from what the method awaited, or a thread's: not a cancel of ours)
                    answer = self._error(served, "CancelledError", _said(exc) or
                                         "the call ended in a CancelledError (it was not"
                                         " cancelled by the client)")  # fmt: skip
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                # (SystemExit: a method's argparse, say; caught here, it does not end the
                # server; a KeyboardInterrupt from the loop's own Ctrl-C is not raised here)
                answer = self._error(served, type(exc).__name__, _said(exc))
            else:
                answer = self._result(served, result)
        finally:
            served.running.pop(cid, None)
            served.running_bytes -= call.size
            served.cancelled.discard(cid)
            self._start_next(served)
        with contextlib.suppress(SessionLayerError):  # (the session ended meanwhile)
            await self._answer(served, cid, answer)

    def _invoke(self, call: _Call) -> Awaitable[Any]:
        """The call's method at work: its coroutine, or its function in one of this
        server's threads (with the caller's context, as ``asyncio.to_thread`` does)."""
        if call.started is not None:
            return call.started
        fn, args, kwargs = call.method.fn, call.args, call.kwargs or {}
        if not call.method.thread:
            awaitable: Awaitable[Any] = fn(*args, **kwargs)
            return awaitable
        job = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(self.executor, job)

    def _result(self, served: _Served, result: Any) -> bytes:
        try:
            body = served.codec.encode(result)
        except Exception as exc:
            return self._error(served, "TypeError",
                               f"the result cannot be encoded ({served.codec.name}): {exc}")
        if _HEAD_SIZE + len(body) > served.max_frame:  # (it would abort the whole session)
            return self._error(served, "TooLarge",
                               f"the result is {len(body)} octets encoded ({served.codec.name});"
                               f" one message carries at most {served.max_frame - _HEAD_SIZE}")
        served.stats.ok += 1
        return _RESULT + body

    def _cancelled(self, served: _Served) -> bytes:
        return self._error(served, "Cancelled", "cancelled by the client", count=False)

    def _error(self, served: _Served, type_name: str, message: str, *,
               count: bool = True) -> bytes:  # fmt: skip
        if count:
            served.stats.errors += 1
        # (surrogates escaped: a client's "\udc80" in Python's own words, "unexpected
        # keyword argument '\udc80'", made the encoding of the answer fail)
        text = [part.encode("utf-8", "backslashreplace").decode() for part in
                (type_name[:256], message[:4096])]  # fmt: skip
        return _ERROR + served.codec.encode(text)

    async def _answer(self, served: _Served, cid: int, answer: bytes) -> None:
        """Send the answer (its type and body; the id goes in here), and keep it for a
        duplicate (the last ``remember`` answers, at most ``remember_bytes``)."""
        frame = _HEAD.pack(answer[:1], cid) + answer[1:]
        kept = served.answers
        kept[cid] = frame
        served.answer_bytes += len(frame)
        while kept and (len(kept) > self.remember or served.answer_bytes > self.remember_bytes):
            _, old = kept.popitem(last=False)
            served.answer_bytes -= len(old)
        await served.session.send(frame)

    async def _duplicate(self, served: _Served, cid: int) -> None:
        """A call id seen before: never run again; its answer again when kept (one still
        running or waiting gets its one answer when it ends)."""
        served.stats.duplicates += 1
        count = served.stats.duplicates
        if count & (count - 1) == 0:  # (the 1st, 2nd, 4th, 8th...: a flood is a few lines)
            served.session.log.warning(
                "session %s: RPC call %d arrived again; not run again (%d duplicates on this"
                " session)", served.session.id, cid, count)  # fmt: skip
        answer = served.answers.get(cid)
        if answer is not None:
            await served.session.send(answer)


_NO_ARGS: list[Any] = []  # (a waiting call's, until it starts: never changed)


def _decode_call(codec: _Codec, body: bytes) -> tuple[str, list[Any], dict[str, Any] | None,
                                                      float | None]:  # fmt: skip
    """A call's body, checked (an error here is answered ``BadRequest``)."""
    decoded = codec.decode(body)
    if not isinstance(decoded, list) or len(decoded) != 4:
        raise ValueError("malformed call")
    name, args, kwargs, timeout = decoded
    if not isinstance(name, str) or not isinstance(args, list) or not (
        kwargs is None or isinstance(kwargs, dict)
    ):
        raise ValueError("malformed call")
    if not _valid_timeout(timeout):
        raise ValueError(f"the timeout must be null or a finite number >= 0, not {timeout!r}")
    return name, args, kwargs, timeout


def _said(exc: BaseException) -> str:
    """``str(exc)``, or words for it when its ``__str__`` fails."""
    try:
        return str(exc)
    except Exception:
        return f"(a {type(exc).__name__} whose text cannot be had)"


def _cancelling() -> bool:
    """This task was cancelled (its session ended), rather than handed a CancelledError by
    what it awaited (a cancelled task or future of someone else's, a thread's)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _call_done(session: Session, task: asyncio.Task[None]) -> None:
    """(A call's task ended: a failure of ours is logged, never left to the loop.)"""
    exc = None if task.cancelled() else task.exception()
    if exc is not None and not isinstance(exc, SessionLayerError):
        session.log.error("RPC call on session %s failed", session.id, exc_info=exc)


def rpc_handler(registry: Registry, **kwargs: Any) -> Callable[[Session], Awaitable[None]]:
    """A ``serve()`` handler serving ``registry`` (``kwargs``: :class:`RpcServer`'s)."""
    return RpcServer(registry, **kwargs).handle


async def _drain_events(session: Session) -> None:
    """Read ``events()`` so that they never pile up (interruptions, resumes)."""
    async for _ in session.events():
        pass


# ---------------------------------------------------------------------------- the client


class RpcClient:
    """Calls over one session (its codec is the one agreed at connect).

    ``await rpc.call("name", *args, timeout=None, **kwargs)`` returns the result, or
    raises :class:`RemoteCallError` (the remote exception's type name and message),
    :class:`CallTimeout`, or :class:`CallLost` (the session ended, or the server lost its
    state, with the call in flight; or the session was over before it was sent).
    Cancelling the awaiting task sends a cancel to the server.  Any number of calls may be
    in flight; answers come in any order.  A call that cannot go (a bad ``timeout``, too
    large encoded, arguments the codec cannot carry) raises at once, and nothing is sent.

    ``max_tsdu_size`` is the server's ``Options.max_tsdu_size`` (the default's, 1 MiB): a
    call whose frame would not fit raises ValueError (the server would abort the session
    on it).
    """

    def __init__(self, session: Session, *, owns_session: bool = False,
                 max_tsdu_size: int = _DEFAULT_TSDU) -> None:  # fmt: skip
        self.session = session
        self.codec = _codec_of(session)
        self.max_frame = _max_frame(max_tsdu_size)  #: the largest call frame that may go
        self.owns_session = owns_session
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._sent_at: dict[int, int] = {}  # a call's id: session.restores when it went
        self._next = 1
        self._reader: asyncio.Task[None] | None = None
        self._events: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._over: BaseException | None = None
        self.restores = 0  #: times the server lost its state (calls then lost)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _start(self) -> None:
        self._reader = asyncio.ensure_future(self._read())
        self._reader.add_done_callback(self._reader_done)
        self._events = asyncio.ensure_future(_drain_events(self.session))

    async def call(self, name: str, /, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any:  # fmt: skip
        """Call ``name`` on the server; see the class docstring.  (``name`` is
        positional-only, so that the method may have a keyword argument ``name``.)"""
        body = self._encode(name, args, kwargs, timeout)
        if self._reader is None:
            self._start()
        if self._over is not None:
            raise CallLost(f"the session is over: {self._over}")
        cid = self._next
        self._next = cid + 1
        frame = _HEAD.pack(_CALL, cid) + body
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = self._pending
        pending[cid] = future
        try:
            try:
                try:
                    await self.session.send(frame)
                except CheckpointRestored:  # (this call was not sent: it may go now)
                    self._restored()
                    await self.session.send(frame)
                self._sent_at[cid] = self.session.restores
            except (SessionClosed, SessionAborted) as exc:
                raise CallLost(f"the session is over (the call was not sent): {exc}") from None
            if timeout is None:
                return await future
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                if future.done() and not future.cancelled():
                    # The answer came in the deadline's turn of the loop: it is the
                    # call's (the server ran it), not a timeout.
                    return future.result()
                self._cancel(cid)
                raise CallTimeout(f"no answer to {name!r} within {timeout:g} s") from None
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                self._cancel(cid)
            raise
        finally:
            pending.pop(cid, None)
            self._sent_at.pop(cid, None)

    def _encode(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                timeout: float | None) -> bytes:  # fmt: skip
        """A call's body, or ValueError (TypeError: the codec's) before anything is sent:
        a timeout the server would refuse, or a frame the peer would abort the session on."""
        if not _valid_timeout(timeout):
            raise ValueError(f"timeout must be None or a finite number >= 0, not {timeout!r}")
        body = self.codec.encode([name, list(args), kwargs or None, timeout])
        if _HEAD_SIZE + len(body) > self.max_frame:
            raise ValueError(f"the call to {name!r} is {len(body)} octets encoded"
                             f" ({self.codec.name}); one message carries at most"
                             f" {self.max_frame - _HEAD_SIZE}")  # fmt: skip
        return body

    def _cancel(self, cid: int) -> None:
        """Tell the server to cancel call ``cid`` (in the background: never waits)."""
        if self._over is not None or self.session.closed:
            return
        task = asyncio.ensure_future(self._send_cancel(cid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_cancel(self, cid: int) -> None:
        with contextlib.suppress(SessionLayerError):
            await self.session.send(_HEAD.pack(_CANCEL, cid))

    async def _read(self) -> None:
        session = self.session
        pending = self._pending
        decode = self.codec.decode
        while True:
            try:
                async for message in session:
                    if len(message) < _HEAD_SIZE:
                        continue
                    kind, cid = _HEAD.unpack_from(message)
                    future = pending.get(cid)
                    if future is None or future.done():
                        continue  # (cancelled, timed out, or a second answer: ignored)
                    try:
                        body = decode(message[_HEAD_SIZE:])
                    except Exception as exc:
                        future.set_exception(RpcError(f"cannot decode the answer: {exc}"))
                        continue
                    if kind == _RESULT:
                        future.set_result(body)
                    elif kind == _ERROR:
                        type_name, text = (body if isinstance(body, list) and len(body) == 2
                                           else ("RpcError", repr(body)))  # fmt: skip
                        future.set_exception(RemoteCallError(str(type_name), str(text)))
                return
            except CheckpointRestored:
                self._restored()

    def _restored(self) -> None:
        """The server lost its state: the calls sent before (each task that calls or reads
        is told once, of the same restore) are lost."""
        restores = self.session.restores
        self.restores = restores
        lost = CallLost("the server lost its state (it was restarted): whether the call"
                        " ran is unknown")  # fmt: skip
        pending = self._pending
        for cid, sent_at in list(self._sent_at.items()):
            future = pending.get(cid)
            if sent_at < restores and future is not None and not future.done():
                future.set_exception(lost)

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        exc: BaseException | None = None
        if task.cancelled():
            exc = SessionClosed("the RPC client was closed")
        else:
            exc = task.exception()
            if exc is None:
                exc = SessionClosed("the session was released")
            elif not isinstance(exc, SessionLayerError):
                log.error("RPC client of session %s failed", self.session.id, exc_info=exc)
        self._over = exc
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CallLost(f"the session ended with the call in flight:"
                                              f" {exc}"))  # fmt: skip

    async def aclose(self) -> None:
        """Stop reading answers (calls in flight fail with :class:`CallLost`), and release
        the session when this client opened it (:func:`rpc_connect`)."""
        if self.owns_session and not self.session.closed:
            with contextlib.suppress(SessionLayerError, TimeoutError):
                await self.session.release()
        tasks = [t for t in (self._reader, self._events, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


async def rpc_connect(host: str, port: int, *, codec: str | None = None,
                      offers: Mapping[str, list[str]] | None = None,
                      options: Options | None = None, **kwargs: Any) -> RpcClient:  # fmt: skip
    """Open an RPC session to ``host:port`` (``kwargs``: :func:`sessionlayer.connect`'s)
    and return its :class:`RpcClient` (``async with``: released at the end).  ``codec``
    picks one (``"json"``, ``"msgpack"``); by default the best both sides have.  The
    largest call is what ``options.max_tsdu_size`` allows: the server is taken to have the
    same."""
    choice = [codec] if codec is not None else codecs()
    if codec is not None and codec not in _codecs():
        raise ValueError(f"codec {codec!r} is not available here (msgpack needs its extra)")
    max_tsdu_size = (options or Options()).max_tsdu_size
    _max_frame(max_tsdu_size)  # (its ValueError before a session is opened)
    wanted = {"service": [SERVICE], CODEC: choice, **(offers or {})}
    session = await connect(host, port, offers=wanted, options=options, **kwargs)
    return RpcClient(session, owns_session=True, max_tsdu_size=max_tsdu_size)
