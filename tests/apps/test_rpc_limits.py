"""RPC's limits (sessionlayer.apps.rpc): a call waiting for a slot never stops the session
being read, a timeout is a finite number, no frame is larger than a TSDU, a CancelledError
the method raises itself is answered, ``thread=True`` methods have threads of their own,
and the method's name is positional-only."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import threading
from typing import Any

import pytest

import sessionlayer
from sessionlayer import Options
from sessionlayer.apps.rpc import (
    RPC_SUPPORTED,
    CallTimeout,
    Registry,
    RemoteCallError,
    RpcServer,
    rpc_connect,
)

from .helpers import LIMIT, run, until

#: A small TSDU (64 KiB) on both sides, so that the frames past it are quick to make.
SMALL = Options(max_tsdu_size=1 << 16)


class Methods:
    """Calls that stay running until cancelled, and calls that answer at once."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.registry = Registry()
        self.registry.register("forever", self.forever)
        self.registry.register("tag", self.tag)
        self.registry.register("ping", lambda: "pong")
        self.registry.register("echo", lambda *args: list(args))

    async def forever(self, tag: str) -> None:
        self.started.append(tag)
        await asyncio.Event().wait()

    async def tag(self, tag: str) -> str:
        self.started.append(tag)
        return tag


async def cancelled(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, LIMIT)


def call_frame(cid: int, body: str) -> bytes:
    return b"C" + cid.to_bytes(8, "big") + body.encode()


def test_a_cancel_reaches_calls_waiting_for_a_slot_and_the_session_goes_on() -> None:
    """Two calls hold the two slots; the calls behind them wait in a queue of their own,
    not in the session's reader: the frames behind them are read (an inline call answers,
    a cancel reaches a waiting call), and cancelling the two running calls frees their
    slots for the calls waiting."""

    async def main() -> None:
        methods = Methods()
        rpc_server = RpcServer(methods.registry, max_running=2)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                a = asyncio.ensure_future(rpc.call("forever", "a"))
                b = asyncio.ensure_future(rpc.call("forever", "b"))
                await until(lambda: len(methods.started) == 2)
                c = asyncio.ensure_future(rpc.call("forever", "c"))
                d = asyncio.ensure_future(rpc.call("tag", "d"))
                await until(lambda: rpc_server.stats.calls == 4)
                assert await asyncio.wait_for(rpc.call("ping"), LIMIT) == "pong"
                assert rpc_server.stats.waiting == 2
                await cancelled(c)  # (waiting: it leaves the queue, and never runs)
                await until(lambda: rpc_server.stats.cancelled == 1)
                assert rpc_server.stats.waiting == 1
                await cancelled(a)
                await cancelled(b)
                assert await asyncio.wait_for(d, LIMIT) == "d"
                assert methods.started == ["a", "b", "d"]
                assert await asyncio.wait_for(rpc.call("tag", "e"), LIMIT) == "e"
                stats = rpc_server.stats
                assert (stats.cancelled, stats.running, stats.waiting) == (3, 0, 0)

    run(main())


def test_calls_past_max_waiting_are_refused_busy_and_never_run() -> None:
    async def main() -> None:
        methods = Methods()
        rpc_server = RpcServer(methods.registry, max_running=1, max_waiting=2,
                               max_waiting_bytes=200)  # fmt: skip
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port, codec="json") as rpc:
                a = asyncio.ensure_future(rpc.call("forever", "a"))
                await until(lambda: methods.started == ["a"])
                b = asyncio.ensure_future(rpc.call("tag", "b"))
                await until(lambda: rpc_server.stats.waiting == 1)
                with pytest.raises(RemoteCallError) as err:  # past max_waiting_bytes
                    await asyncio.wait_for(rpc.call("tag", "x" * 300), LIMIT)
                assert err.value.type == "Busy"
                c = asyncio.ensure_future(rpc.call("tag", "c"))
                await until(lambda: rpc_server.stats.waiting == 2)
                with pytest.raises(RemoteCallError) as err:  # past max_waiting
                    await asyncio.wait_for(rpc.call("tag", "y"), LIMIT)
                assert err.value.type == "Busy" and "did not run" in err.value.message
                await cancelled(a)
                assert await asyncio.wait_for(asyncio.gather(b, c), LIMIT) == ["b", "c"]
                assert methods.started == ["a", "b", "c"]
                assert rpc_server.stats.errors == 2

    run(main())


def test_a_peers_timeout_that_is_not_a_finite_number_is_refused() -> None:
    """JSON carries NaN and Infinity, which ``asyncio.timeout`` must never see (a NaN
    corrupts the loop's timer heap); a negative timeout, a bool, an int too large for a
    float are refused too, each with ``BadRequest`` for that call alone."""

    async def main() -> None:
        methods = Methods()
        rpc_server = RpcServer(methods.registry)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await sessionlayer.connect(
                "127.0.0.1", s.port, offers={"service": ["rpc"], "rpc-codec": ["json"]}
            ) as raw:
                bad = ["NaN", "Infinity", "-Infinity", "-1", "-0.5", "true", "false",
                       "1" + "0" * 400, '"5"']  # fmt: skip
                for cid, timeout in enumerate(bad, 1):
                    await raw.send(call_frame(cid, f'["tag",["{cid}"],null,{timeout}]'))
                    answer = await asyncio.wait_for(raw.receive(), LIMIT)
                    assert answer[:9] == b"E" + cid.to_bytes(8, "big"), (timeout, answer)
                    type_name, message = json.loads(answer[9:])
                    assert type_name == "BadRequest" and "timeout" in message, timeout
                for cid, timeout in ((20, "0"), (21, "5"), (22, "0.25"), (23, "null")):
                    await raw.send(call_frame(cid, f'["echo",[{cid}],null,{timeout}]'))
                    assert await asyncio.wait_for(raw.receive(), LIMIT) == (
                        b"R" + cid.to_bytes(8, "big") + f"[{cid}]".encode())
        assert methods.started == []
        assert rpc_server.stats.errors == len(bad)

    run(main())


def test_a_callers_timeout_that_is_not_a_finite_number_raises_at_once() -> None:
    async def main() -> None:
        methods = Methods()
        rpc_server = RpcServer(methods.registry)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                sent = rpc.session.messages_out
                for timeout in (math.nan, math.inf, -math.inf, -1, -0.01, True, "5"):
                    with pytest.raises(ValueError, match="finite number"):
                        await rpc.call("tag", "t", timeout=timeout)  # type: ignore[arg-type]
                assert rpc.session.messages_out == sent and rpc.in_flight == 0
                assert await rpc.call("tag", "u", timeout=LIMIT) == "u"
                assert await rpc.call("tag", "v", timeout=int(LIMIT)) == "v"
        assert rpc_server.stats.calls == 2 and methods.started == ["u", "v"]

    run(main())


def test_a_call_or_a_result_too_large_for_one_message_fails_alone() -> None:
    """A frame over the TSDU would make the peer abort the session, and every call in
    flight with it: a call that large raises at once (nothing sent), a result that large
    is answered ``TooLarge``; the call in flight meanwhile, and the session, go on."""

    async def main() -> None:
        methods = Methods()
        gate = asyncio.Event()

        async def held() -> str:
            await gate.wait()
            return "held"

        methods.registry.register("held", held)
        methods.registry.register("inline_big", lambda n: "x" * n)

        async def big(n: int) -> str:
            return "x" * n

        methods.registry.register("big", big)
        rpc_server = RpcServer(methods.registry, max_tsdu_size=SMALL.max_tsdu_size)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED,
                                            options=SMALL) as s:  # fmt: skip
            async with await rpc_connect("127.0.0.1", s.port, codec="json",
                                         options=SMALL) as rpc:  # fmt: skip
                assert rpc.max_frame == (1 << 16) - 64
                in_flight = asyncio.ensure_future(rpc.call("held"))
                room = rpc.max_frame - 9 - len(rpc.codec.encode(["echo", [""], None, None]))
                sent = rpc.session.messages_out
                with pytest.raises(ValueError, match="octets encoded"):
                    await rpc.call("echo", "x" * (room + 1))
                assert rpc.session.messages_out == sent
                assert await asyncio.wait_for(rpc.call("echo", "x" * room), LIMIT) == [
                    "x" * room]  # (the largest call that goes)
                for name in ("big", "inline_big"):
                    with pytest.raises(RemoteCallError) as err:
                        await asyncio.wait_for(rpc.call(name, 1 << 16), LIMIT)
                    assert err.value.type == "TooLarge", name
                    assert "at most" in err.value.message
                gate.set()
                assert await asyncio.wait_for(in_flight, LIMIT) == "held"
                assert await rpc.call("ping") == "pong"
                assert rpc.session.resumes == 0 and not rpc.session.closed
        assert rpc_server.stats.errors == 2

    run(main())


def test_a_cancelled_error_the_method_raises_itself_is_answered() -> None:
    """A method not cancelled that ends in a CancelledError (a cancelled future's result
    in a thread, a task someone else cancelled, a plain function raising it) gets an
    answer naming it, rather than none at all."""

    async def main() -> None:
        registry = Registry()

        def cancelled_future() -> None:
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            future.cancel()
            future.result()

        async def cancelled_task() -> None:
            task = asyncio.ensure_future(asyncio.sleep(LIMIT))
            await asyncio.sleep(0)
            task.cancel()
            await task

        def raises() -> None:
            raise asyncio.CancelledError("raised by hand")

        registry.register("in_thread", cancelled_future, thread=True)
        registry.register("in_task", cancelled_task)
        registry.register("inline", raises)
        registry.register("ping", lambda: "pong")
        rpc_server = RpcServer(registry)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                for name in ("in_thread", "in_task", "inline"):
                    with pytest.raises(RemoteCallError) as err:
                        await asyncio.wait_for(rpc.call(name), LIMIT)
                    assert err.value.type == "CancelledError", name
                    assert await asyncio.wait_for(rpc.call("ping"), LIMIT) == "pong"
        stats = rpc_server.stats
        assert (stats.errors, stats.cancelled, stats.ok) == (3, 0, 3)

    run(main())


def test_thread_methods_run_in_threads_of_the_servers_own() -> None:
    """Stuck ``thread=True`` calls hold the server's ``max_threads`` threads only: the
    loop's default executor (``to_thread``, ``getaddrinfo``) stays free; calls waiting for
    a thread time out there and never run; ``close()`` does not wait for a stuck one."""

    async def main() -> None:
        release = threading.Event()
        started: list[int] = []

        def stuck() -> str:
            started.append(1)
            release.wait(2 * LIMIT)  # (set at the end, whatever happens)
            return "late"

        registry = Registry()
        registry.register("stuck", stuck, thread=True)
        registry.register("where", lambda: threading.current_thread().name, thread=True)
        rpc_server = RpcServer(registry, max_threads=2)
        try:
            async with await sessionlayer.serve(rpc_server.handle,
                                                supported=RPC_SUPPORTED) as s:  # fmt: skip
                async with await rpc_connect("127.0.0.1", s.port) as rpc:
                    assert (await rpc.call("where")).startswith("sessionlayer-rpc")
                    calls = [rpc.call("stuck", timeout=0.2) for _ in range(8)]
                    results = await asyncio.wait_for(
                        asyncio.gather(*calls, return_exceptions=True), LIMIT)
                    assert all(isinstance(r, CallTimeout) for r in results), results
                    await until(lambda: rpc_server.stats.running == 0)
                    loop = asyncio.get_running_loop()
                    assert await asyncio.wait_for(asyncio.to_thread(lambda: 1), LIMIT) == 1
                    assert await asyncio.wait_for(loop.getaddrinfo("localhost", 80), LIMIT)
                    assert len(started) == 2  # (the six waiting for a thread never ran)
                    with pytest.raises(CallTimeout):  # (no thread free: it waits, times out)
                        await rpc.call("where", timeout=0.2)
                    await asyncio.wait_for(asyncio.to_thread(rpc_server.close), LIMIT)
                    with pytest.raises(RemoteCallError) as err:
                        await asyncio.wait_for(rpc.call("where"), LIMIT)
                    assert err.value.type == "RuntimeError"
        finally:
            release.set()
            rpc_server.close()

    run(main())


def test_the_method_name_is_positional_only() -> None:
    async def main() -> None:
        registry = Registry()
        registry.register("greet", lambda name, **more: [f"hi {name}", more])
        async with await sessionlayer.serve(RpcServer(registry).handle,
                                            supported=RPC_SUPPORTED) as s:  # fmt: skip
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                assert await asyncio.wait_for(rpc.call("greet", name="bob"), LIMIT) == [
                    "hi bob", {}]
                assert await asyncio.wait_for(rpc.call("greet", "al", name_="x"), LIMIT) == [
                    "hi al", {"name_": "x"}]

    run(main())


def test_the_frames_of_running_calls_are_bounded_in_octets() -> None:
    """Running calls hold their decoded arguments (a frame of ``[[],[],...]`` is about 21
    times its size decoded): past ``max_running_bytes`` of their frames a call waits for a
    slot as past ``max_running`` (before, only their count was bounded: 1000 calls of a
    MiB each, some 20 GiB).  One call runs alone whatever its size."""

    async def main() -> None:
        methods = Methods()
        rpc_server = RpcServer(methods.registry, max_running_bytes=100_000)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                big = "x" * 60_000
                a = asyncio.ensure_future(rpc.call("forever", big))
                await until(lambda: len(methods.started) == 1)  # alone: it runs
                b = asyncio.ensure_future(rpc.call("forever", big + "b"))
                c = asyncio.ensure_future(rpc.call("tag", "c"))  # small: it waits behind b
                await until(lambda: rpc_server.stats.calls == 3)
                stats = rpc_server.stats
                assert (stats.running, stats.waiting) == (1, 2) and len(methods.started) == 1
                await cancelled(a)  # its octets free: b runs, and c (small) beside it
                assert await asyncio.wait_for(c, LIMIT) == "c"
                assert methods.started[1:] == [big + "b", "c"]
                await cancelled(b)

    run(main())


def test_max_running_bytes_is_checked() -> None:
    with pytest.raises(ValueError, match="max_running_bytes"):
        RpcServer(Registry(), max_running_bytes=-1)
