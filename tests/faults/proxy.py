"""A fault-injecting TCP proxy on 127.0.0.1 (asyncio).

    async with FaultProxy("127.0.0.1", server_port, seed=1) as proxy:
        ...connect to 127.0.0.1:proxy.port...
        proxy.cut("reset")                 # RST both sides of every open connection
        proxy.schedule(cut_after_bytes=(1, 4000), modes=("reset", "close"), max_cuts=5)
        await proxy.wait_cuts(5)

Each accepted connection gets its own connection to the target and two pumps (one per
direction) that read at most `chunk` bytes, write them and wait until the kernel has taken
them all (write buffer limits of zero), so the proxy holds at most about one chunk per
direction in memory and a slow reader slows the writer down.

Cut modes: "reset" sends RST both ways (SO_LINGER 0, then close); "close" sends FIN both
ways after the bytes already forwarded, then discards whatever either side still sends until
it closes too; "blackhole" stops forwarding and reading but keeps both sockets open, so
bytes vanish with no FIN or RST, until `heal()` or the next `cut()` resets them. (The
kernel still takes what fits in the proxy's receive buffers, then the window closes: the
silence of a hung peer. For packets that vanish on the wire use `netns.NetnsPair`.)

A scheduled byte cut forwards exactly the drawn number of bytes and waits until the kernel
has taken them before it cuts; with "reset", as with any RST, bytes still queued in the
kernel when the RST goes are lost (on loopback, with a peer that reads, none are).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import cast

MODES = ("reset", "close", "blackhole")
_LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class Cut:
    """One connection cut: which one (1-based, in accept order), how, after how many bytes
    forwarded on it (both directions), and why ("manual", "bytes" or "seconds")."""

    connection: int
    mode: str
    after_bytes: int
    reason: str


@dataclass(frozen=True)
class _Schedule:
    cut_after_bytes: tuple[int, int] | None
    cut_after_seconds: tuple[float, float] | None
    modes: tuple[str, ...]
    max_cuts: int | None


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"cut mode must be one of {MODES}, not {mode!r}")
    return mode


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: SO_LINGER 0 makes close() drop the send queue and send a reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None and not writer.transport.is_closing():
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    writer.transport.abort()


def _tune(writer: asyncio.StreamWriter, sockbuf: int | None) -> None:
    """Zero write-buffer limits (drain waits until the kernel took everything), and the
    kernel buffer sizes when asked."""
    writer.transport.set_write_buffer_limits(0)
    sock = writer.get_extra_info("socket")
    if sockbuf is not None and sock is not None:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, sockbuf)


class _Link:
    """One proxied connection: the client side, the target side and the two pumps."""

    def __init__(
        self,
        proxy: FaultProxy,
        number: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        plan: tuple[int | None, float | None, str] | None,
    ) -> None:
        self.proxy = proxy
        self.number = number
        self.client = client
        self.target: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        # connecting -> open -> ended (EOF both ways) | closing | blackholed | reset -> done
        self.state = "connecting"
        self.pending: str | None = None  # the mode of a cut made while connecting
        self.forwarded = 0
        self.budget, self.seconds, self.mode = plan if plan else (None, None, "reset")
        self.pumps: list[asyncio.Task[None]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.released = asyncio.Event()

    def writers(self) -> list[asyncio.StreamWriter]:
        pairs = [self.client] + ([self.target] if self.target else [])
        return [writer for _, writer in pairs]

    async def run(self) -> None:
        proxy = self.proxy
        try:
            try:
                async with asyncio.timeout(proxy.connect_timeout):
                    self.target = await asyncio.open_connection(
                        proxy.target_host, proxy.target_port, limit=proxy.chunk
                    )
            except (OSError, TimeoutError):
                self.state = "done"
                _reset(self.client[1])
                return
            for writer in self.writers():
                _tune(writer, proxy.sockbuf)
            self.state = "open"
            if self.pending:
                self._apply(self.pending)
            elif self.budget == 0:
                if proxy._reserve():
                    self.cut(self.mode, "bytes")
                else:
                    self.budget = None  # max_cuts reached meanwhile: forward faithfully
            if self.state == "open":
                if self.seconds is not None:
                    loop = asyncio.get_running_loop()
                    self.timer = loop.call_later(self.seconds, self._timed_out)
                (creader, cwriter), (treader, twriter) = self.client, self.target
                self.pumps = [
                    asyncio.create_task(self._pump(creader, twriter, up=True)),
                    asyncio.create_task(self._pump(treader, cwriter, up=False)),
                ]
                await asyncio.wait(self.pumps)
                if self.state == "open":
                    self.state = "ended"  # EOF both ways: close cleanly
            if self.state == "closing":
                await asyncio.gather(*(self._discard(*pair) for pair in (self.client, self.target)))
            elif self.state == "blackholed":
                await self.released.wait()
        finally:
            await self._finish()

    async def _finish(self) -> None:
        """Whatever happened: timer off, pumps gone, both sockets closed and waited for."""
        if self.timer:
            self.timer.cancel()
        for task in self.pumps:
            task.cancel()
        for result in await asyncio.gather(*self.pumps, return_exceptions=True):
            if isinstance(result, Exception):
                self.proxy.errors.append(result)
        for writer in self.writers():
            if self.state == "ended":
                writer.close()
            else:
                _reset(writer)
        self.state = "done"
        for writer in self.writers():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)
        self.proxy._links.discard(self)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        """Forward one direction until EOF, an error (passed on as a reset) or a cut."""
        try:
            while self.state == "open":
                data = await reader.read(self.proxy.chunk)
                if not data:
                    if self.state == "open" and writer.can_write_eof():
                        writer.write_eof()  # half-close passes through
                    return
                data, reached = self._take(data)
                if not data:
                    return  # past a pending cut: the bytes vanish
                writer.write(data)
                self.forwarded += len(data)
                self.proxy._count(len(data), up=up)
                await writer.drain()
                if reached:
                    self.cut(self.mode, "bytes")
                    return
        except OSError:
            if self.state == "open":
                self.state = "reset"  # a peer reset (or vanished): reset the other side too
                for each in self.writers():
                    _reset(each)

    def _take(self, data: bytes) -> tuple[bytes, bool]:
        """The part of `data` to forward, and whether it reaches the scheduled cut."""
        if self.budget is None:
            return data, False
        if self.budget == 0:
            return b"", False
        if len(data) < self.budget:
            self.budget -= len(data)
            return data, False
        if not self.proxy._reserve():
            self.budget = None  # max_cuts reached meanwhile: forward faithfully
            return data, False
        data, self.budget = data[: self.budget], 0
        return data, True

    def _timed_out(self) -> None:
        self.timer = None
        if self.state == "open" and self.budget != 0 and self.proxy._reserve():
            self.cut(self.mode, "seconds")

    def cut(self, mode: str, reason: str) -> bool:
        """Cut this connection now (or as soon as the target has answered, when it is
        still connecting); False when it is cut already."""
        if self.state not in ("connecting", "open") or self.pending:
            return False
        self.proxy._record(Cut(self.number, mode, self.forwarded, reason))
        if self.state == "connecting":
            self.pending = mode
        else:
            self._apply(mode)
        return True

    def _apply(self, mode: str) -> None:
        if self.timer:
            self.timer.cancel()
        current = asyncio.current_task()
        for task in self.pumps:
            if task is not current:
                task.cancel()
        if mode == "reset":
            self.state = "reset"
            for writer in self.writers():
                _reset(writer)
        elif mode == "close":
            self.state = "closing"
            for writer in self.writers():
                if writer.can_write_eof():
                    writer.write_eof()  # FIN once what was forwarded has left
        else:
            self.state = "blackholed"
            for writer in self.writers():
                cast(asyncio.Transport, writer.transport).pause_reading()

    async def _discard(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After a "close" cut: drop what the peer still sends, close once it has closed."""
        with contextlib.suppress(OSError):
            while await reader.read(self.proxy.chunk):
                pass
        writer.close()

    def release(self) -> None:
        """Reset a blackholed connection (heal, or the next cut)."""
        if self.pending == "blackhole":
            self.pending = "reset"  # blackholed before it was even connected
        if self.state == "blackholed":
            self.state = "reset"
            for writer in self.writers():
                _reset(writer)
            self.released.set()


class FaultProxy:
    """A TCP proxy from 127.0.0.1:`port` to `target_host`:`target_port` that injects faults.

    `seed` seeds the generator behind `schedule()`. `chunk` bounds each read (and so the
    memory held per direction); `sockbuf`, when given, sets SO_RCVBUF and SO_SNDBUF on the
    proxy's own sockets (small buffers keep little data in flight). `connect_timeout` bounds
    the connection to the target; when it fails the client is reset.

    Counters: `connections` (accepted and forwarded), `active` (open now), `refused`,
    `cuts` (connections cut, by hand or by schedule), `bytes_up` (client to target) and
    `bytes_down` (bytes forwarded); `log` lists every `Cut`. `errors` collects unexpected
    exceptions from the proxy's own tasks (it should stay empty; nothing is left for the
    loop's exception handler).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        seed: int,
        chunk: int = 65536,
        sockbuf: int | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.chunk = chunk
        self.sockbuf = sockbuf
        self.connect_timeout = connect_timeout
        self.port = 0
        self.connections = 0
        self.refused = 0
        self.cuts = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.log: list[Cut] = []
        self.errors: list[BaseException] = []
        self._random = random.Random(seed)
        self._schedule: _Schedule | None = None
        self._scheduled_cuts = 0
        self._refusing = False
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------ lifetime

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1 (then in `port`)."""
        self._server = await asyncio.start_server(
            self._accepted, "127.0.0.1", 0, limit=self.chunk
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, reset every connection, and wait for all the proxy's tasks."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def active(self) -> int:
        """Connections open now (including blackholed ones and ones still closing)."""
        return len(self._links)

    # ------------------------------------------------------------ faults

    def cut(self, mode: str = "reset") -> int:
        """Cut every current connection (see the module docstring for the modes); one
        still connecting to the target is cut as soon as it is connected. Connections
        blackholed before are reset. Returns how many connections were cut (not counting
        those resets)."""
        _check_mode(mode)
        for link in list(self._links):
            link.release()
        return sum(link.cut(mode, "manual") for link in list(self._links))

    def heal(self) -> int:
        """Reset every blackholed connection; returns how many."""
        blackholed = [link for link in self._links if link.state == "blackholed"]
        for link in blackholed:
            link.release()
        return len(blackholed)

    def refuse(self, on: bool = True) -> None:
        """While on, new connections are accepted and reset at once (counted in `refused`)."""
        self._refusing = on

    def schedule(
        self,
        *,
        cut_after_bytes: tuple[int, int] | None = None,
        cut_after_seconds: tuple[float, float] | None = None,
        modes: tuple[str, ...] = ("reset",),
        max_cuts: int | None = None,
    ) -> None:
        """Cut each connection accepted from now on after a random number of bytes forwarded
        (both directions together; exactly that many, so a cut may split anything) drawn
        from `cut_after_bytes` (inclusive), or after a random time in `cut_after_seconds`,
        whichever comes first, with a mode drawn from `modes`. After `max_cuts` scheduled
        cuts from this call on (None: no limit) connections are forwarded faithfully; a
        cut made by hand does not count. With neither range the schedule is off. The draws
        (bytes, seconds, mode) come from `random.Random(seed)`, per connection in accept
        order, so a sequential workload gets the same cuts for the same seed."""
        for mode in modes:
            _check_mode(mode)
        if not modes:
            raise ValueError("modes must not be empty")
        for span in (cut_after_bytes, cut_after_seconds):
            if span is not None and not 0 <= span[0] <= span[1]:
                raise ValueError(f"a range must be (lo, hi) with 0 <= lo <= hi, not {span}")
        if cut_after_bytes is None and cut_after_seconds is None:
            self._schedule = None
            return
        self._schedule = _Schedule(cut_after_bytes, cut_after_seconds, tuple(modes), max_cuts)
        self._scheduled_cuts = 0

    # ------------------------------------------------------------ waiting

    async def wait_cuts(self, n: int, timeout: float = 10.0) -> None:
        """Wait until `cuts` >= n (TimeoutError after `timeout` seconds)."""
        await self._wait(lambda: self.cuts >= n, timeout)

    async def wait_connections(self, n: int, timeout: float = 10.0) -> None:
        """Wait until `connections` >= n (TimeoutError after `timeout` seconds)."""
        await self._wait(lambda: self.connections >= n, timeout)

    async def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    # ------------------------------------------------------------ inside

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing or self._server is None or not self._server.is_serving():
            self.refused += 1
            _reset(writer)
            self._notify()
            return
        self.connections += 1
        link = _Link(self, self.connections, (reader, writer), self._plan())
        self._links.add(link)
        task = asyncio.get_running_loop().create_task(link.run())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        self._notify()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    def _plan(self) -> tuple[int | None, float | None, str] | None:
        plan = self._schedule
        if plan is None or (plan.max_cuts is not None and self._scheduled_cuts >= plan.max_cuts):
            return None
        budget = self._random.randint(*plan.cut_after_bytes) if plan.cut_after_bytes else None
        seconds = (
            self._random.uniform(*plan.cut_after_seconds) if plan.cut_after_seconds else None
        )
        return budget, seconds, self._random.choice(plan.modes)

    def _reserve(self) -> bool:
        """Take one scheduled cut, unless max_cuts were made already."""
        plan = self._schedule
        limit = plan.max_cuts if plan is not None else None
        if limit is not None and self._scheduled_cuts >= limit:
            return False
        self._scheduled_cuts += 1
        return True

    def _record(self, cut: Cut) -> None:
        self.cuts += 1
        self.log.append(cut)
        self._notify()

    def _count(self, n: int, *, up: bool) -> None:
        if up:
            self.bytes_up += n
        else:
            self.bytes_down += n
