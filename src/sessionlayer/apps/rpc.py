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
                                            ``MethodNotFound``, ``BadRequest``, ``Timeout``)
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
import contextlib
import functools
import importlib
import inspect
import json
import logging
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


# ---------------------------------------------------------------------------- errors


class RpcError(SessionLayerError):
    """Base class of the errors a call raises besides the session's own."""


class RemoteCallError(RpcError):
    """The remote method raised (or the server refused the call): ``.type`` is the
    remote exception's class name (``"ValueError"``; ``"MethodNotFound"``,
    ``"BadRequest"``, ``"Timeout"`` from the server itself), ``.message`` its text."""

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
    with ``thread=True`` in a worker thread (a timeout or a cancel stops waiting for it,
    not the thread).
    """

    def __init__(self) -> None:
        self.methods: dict[str, _Method] = {}

    def register(self, name: str, fn: Callable[..., Any], *, thread: bool = False) -> None:
        if not name or not callable(fn):
            raise ValueError("a method needs a name and a callable")
        if name in self.methods:
            raise ValueError(f"method {name!r} registered twice")
        is_async = inspect.iscoroutinefunction(fn)
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

    def add(self, other: RpcStats) -> None:
        for name in ("calls", "ok", "errors", "timeouts", "cancelled", "duplicates",
                     "sessions"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Served:
    """One session's calls on the server."""

    def __init__(self, session: Session, codec: _Codec) -> None:
        self.session = session
        self.codec = codec
        self.stats = RpcStats(sessions=1)
        self.running: dict[int, asyncio.Task[None]] = {}
        #: every id up to it was seen (a client sends its ids in increasing order, and the
        #: session keeps the order)
        self.highest = 0
        #: the answers of the last calls (for a duplicate)
        self.answers: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.answer_bytes = 0
        self.cancelled: set[int] = set()
        self.slot = asyncio.Event()


class RpcServer:
    """Serves a :class:`Registry` on sessions: ``serve(RpcServer(registry).handle, ...)``
    (or ``serve(rpc_handler(registry), ...)``).

    ``max_running`` bounds the calls running at once per session (reading the session
    pauses there, so the client's sends wait: backpressure).  ``remember`` is how many
    answered call ids a session keeps with their answers (at most ``remember_bytes`` of
    them) to answer a duplicate without running it again; older duplicates are dropped.
    """

    def __init__(self, registry: Registry, *, max_running: int = 1000,
                 remember: int = 1024, remember_bytes: int = 1 << 20) -> None:  # fmt: skip
        self.registry = registry
        self.max_running = max_running
        self.remember = remember
        self.remember_bytes = remember_bytes
        self.ended = RpcStats()  #: of the sessions that have ended
        self.served: dict[str, _Served] = {}

    @property
    def stats(self) -> RpcStats:
        total = RpcStats()
        total.add(self.ended)
        for served in self.served.values():
            total.add(served.stats)
            total.running += len(served.running)
        return total

    def progress(self, session_id: str) -> dict[str, Any] | None:
        """What ``/sessions`` shows of an RPC session (None: not one)."""
        served = self.served.get(session_id)
        if served is None:
            return None
        s = served.stats
        return {"service": SERVICE, "calls": s.calls, "running": len(served.running),
                "errors": s.errors, "timeouts": s.timeouts, "cancelled": s.cancelled,
                "codec": served.codec.name}  # fmt: skip

    def check(self, request: ConnectRequest) -> None:
        """(Nothing to check at connect: every call is checked as it comes.)"""

    async def handle(self, session: Session) -> None:
        """Serve one session's calls until it ends."""
        served = _Served(session, _codec_of(session))
        self.served[session.id] = served
        events = asyncio.ensure_future(_drain_events(session))
        try:
            await self._serve(served)
        except (SessionClosed, SessionAborted):
            pass
        finally:  # (all of it before the await: the handler may be cancelled there)
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
        if len(message) < _HEAD_SIZE:
            return
        kind, cid = _HEAD.unpack_from(message)
        if kind == _CANCEL:
            task = served.running.get(cid)
            if task is not None:
                served.cancelled.add(cid)
                task.cancel()
            return
        if kind != _CALL:
            return
        if cid in served.running or cid <= served.highest:
            await self._duplicate(served, cid)
            return
        served.highest = cid
        served.stats.calls += 1
        try:
            name, args, kwargs, timeout = served.codec.decode(message[_HEAD_SIZE:])
            if not isinstance(name, str) or not isinstance(args, list) or not (
                kwargs is None or isinstance(kwargs, dict)
            ) or not (timeout is None or isinstance(timeout, int | float)):
                raise ValueError("malformed call")
        except Exception as exc:
            await self._answer(served, cid, self._error(served, "BadRequest",
                                                        f"cannot decode the call: {exc}"))
            return
        method = self.registry.methods.get(name)
        if method is None:
            await self._answer(served, cid, self._error(served, "MethodNotFound",
                                                        f"no method {name!r}"))
            return
        if not method.is_async and not method.thread:  # inline: no task, no await
            try:
                result = method.fn(*args, **(kwargs or {}))
            except Exception as exc:
                answer = self._error(served, type(exc).__name__, str(exc))
            else:
                answer = self._result(served, result)
            await self._answer(served, cid, answer)
            return
        while len(served.running) >= self.max_running:
            served.slot.clear()
            await served.slot.wait()  # (a running call ends; the session's end cancels us)
        task = asyncio.ensure_future(self._run(served, cid, method, args, kwargs, timeout))
        task.add_done_callback(functools.partial(_call_done, served.session))
        served.running[cid] = task

    async def _run(self, served: _Served, cid: int, method: _Method, args: list[Any],
                   kwargs: dict[str, Any] | None, timeout: float | None) -> None:  # fmt: skip
        try:
            try:
                async with asyncio.timeout(timeout) as deadline:
                    if method.thread:
                        result = await asyncio.to_thread(method.fn, *args, **(kwargs or {}))
                    else:
                        result = await method.fn(*args, **(kwargs or {}))
            except TimeoutError as exc:
                if deadline.expired():
                    served.stats.timeouts += 1
                    answer = self._error(served, "Timeout",
                                         f"the call ran past its timeout ({timeout:g} s)",
                                         count=False)
                else:
                    answer = self._error(served, type(exc).__name__, str(exc))
            except asyncio.CancelledError:
                if cid not in served.cancelled:
                    raise  # (the session ended: nothing to answer)
                served.stats.cancelled += 1
                answer = self._error(served, "Cancelled", "cancelled by the client",
                                     count=False)
            except Exception as exc:
                answer = self._error(served, type(exc).__name__, str(exc))
            else:
                answer = self._result(served, result)
        finally:
            served.running.pop(cid, None)
            served.cancelled.discard(cid)
            served.slot.set()
        with contextlib.suppress(SessionLayerError):  # (the session ended meanwhile)
            await self._answer(served, cid, answer)

    def _result(self, served: _Served, result: Any) -> bytes:
        try:
            body = served.codec.encode(result)
        except Exception as exc:
            return self._error(served, "TypeError",
                               f"the result cannot be encoded ({served.codec.name}): {exc}")
        served.stats.ok += 1
        return _RESULT + body

    def _error(self, served: _Served, type_name: str, message: str, *,
               count: bool = True) -> bytes:  # fmt: skip
        if count:
            served.stats.errors += 1
        return _ERROR + served.codec.encode([type_name, message[:4096]])

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
        """A call id seen before: never run again; its answer again when kept."""
        served.stats.duplicates += 1
        served.session.log.warning("session %s: RPC call %d arrived again; not run again",
                                   served.session.id, cid)  # fmt: skip
        answer = served.answers.get(cid)
        if answer is not None:
            await served.session.send(answer)


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
    in flight; answers come in any order.
    """

    def __init__(self, session: Session, *, owns_session: bool = False) -> None:
        self.session = session
        self.codec = _codec_of(session)
        self.owns_session = owns_session
        self._pending: dict[int, asyncio.Future[Any]] = {}
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

    async def call(self, name: str, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any:  # fmt: skip
        """Call ``name`` on the server; see the class docstring."""
        if self._reader is None:
            self._start()
        if self._over is not None:
            raise CallLost(f"the session is over: {self._over}")
        cid = self._next
        self._next = cid + 1
        frame = _HEAD.pack(_CALL, cid) + self.codec.encode(
            [name, list(args), kwargs or None, timeout])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = self._pending
        pending[cid] = future
        try:
            try:
                try:
                    await self.session.send(frame)
                except CheckpointRestored:  # (this call was not sent: it may go now)
                    self._restored(keep=cid)
                    await self.session.send(frame)
            except (SessionClosed, SessionAborted) as exc:
                raise CallLost(f"the session is over (the call was not sent): {exc}") from None
            if timeout is None:
                return await future
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                if future.done() and not future.cancelled():
                    raise  # (the remote method's own TimeoutError: not ours)
                self._cancel(cid)
                raise CallTimeout(f"no answer to {name!r} within {timeout:g} s") from None
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                self._cancel(cid)
            raise
        finally:
            pending.pop(cid, None)

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

    def _restored(self, keep: int | None = None) -> None:
        """The server lost its state: the calls in flight (but ``keep``) are lost."""
        self.restores += 1
        lost = CallLost("the server lost its state (it was restarted): whether the call"
                        " ran is unknown")  # fmt: skip
        for cid, future in list(self._pending.items()):
            if cid != keep and not future.done():
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
    picks one (``"json"``, ``"msgpack"``); by default the best both sides have."""
    choice = [codec] if codec is not None else codecs()
    if codec is not None and codec not in _codecs():
        raise ValueError(f"codec {codec!r} is not available here (msgpack needs its extra)")
    wanted = {"service": [SERVICE], CODEC: choice, **(offers or {})}
    session = await connect(host, port, offers=wanted, options=options, **kwargs)
    return RpcClient(session, owns_session=True)
