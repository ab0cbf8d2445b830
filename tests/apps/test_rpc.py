"""RPC over sessions (sessionlayer.apps.rpc): each call runs exactly once on the server and
gets its own answer, whatever happens to the link; errors, timeouts and cancellation
reach the other side; the codec is agreed at connect."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from tests.faults.proxy import FaultProxy
from tests.tools import unavailable

import sessionlayer
from sessionlayer.apps.rpc import (
    RPC_SUPPORTED,
    CallLost,
    CallTimeout,
    Registry,
    RemoteCallError,
    RpcClient,
    RpcServer,
    codecs,
    rpc_connect,
    rpc_handler,
)
from sessionlayer.stores import MemoryStore

from .helpers import FAST, LIMIT, run, until


class Counter:
    """A registry whose ``incr`` counts every run (and returns the count after it)."""

    def __init__(self) -> None:
        self.value = 0
        self.started: dict[str, int] = {}
        self.cancelled = 0
        self.registry = Registry()
        self.registry.register("incr", self.incr)
        self.registry.register("slow", self.slow)
        self.registry.register("fail", self.fail)
        self.registry.register("echo", lambda *args, **kwargs: [list(args), kwargs])
        self.registry.register("in_thread", self.in_thread, thread=True)

    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    async def slow(self, tag: str, seconds: float) -> str:
        self.started[tag] = self.started.get(tag, 0) + 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return tag

    async def fail(self, kind: str) -> None:
        if kind == "key":
            raise KeyError("no such key")
        raise ValueError(f"bad value {kind!r}")

    def in_thread(self) -> str:
        return threading.current_thread().name


def test_a_counter_incremented_by_10000_calls_under_cuts_is_exactly_10000() -> None:
    """10,000 calls, 200 in flight at a time, while the proxy resets or closes the
    session's connection every 1 to 25 kB: the server ran each once (the counter is
    10,000) and each call got its own answer (the counts 1..10,000, each once)."""
    n, concurrency = 10_000, 200

    async def main() -> None:
        counter = Counter()
        server = await sessionlayer.serve(rpc_handler(counter.registry),
                                          supported=RPC_SUPPORTED, options=FAST)  # fmt: skip
        async with server, FaultProxy("127.0.0.1", server.port, seed=21) as proxy:
            rpc = await rpc_connect("127.0.0.1", proxy.port, options=FAST)
            async with rpc:
                proxy.schedule(cut_after_bytes=(1_000, 25_000), modes=("reset", "close"),
                               max_cuts=60)  # fmt: skip
                proxy.cut("reset")
                results: list[int] = []
                calls = iter(range(n))

                async def worker() -> None:
                    for _ in calls:
                        results.append(await rpc.call("incr", timeout=LIMIT))

                async with asyncio.timeout(LIMIT):
                    await asyncio.gather(*(worker() for _ in range(concurrency)))
                assert counter.value == n
                assert sorted(results) == list(range(1, n + 1))
                assert proxy.cuts >= 40, proxy.cuts
                assert rpc.session.resumes >= 40
                assert rpc.in_flight == 0

    run(main())


def test_a_call_in_flight_during_a_drop_completes_once_after_the_resume() -> None:
    async def main() -> None:
        counter = Counter()
        server = await sessionlayer.serve(rpc_handler(counter.registry),
                                          supported=RPC_SUPPORTED, options=FAST)  # fmt: skip
        async with server, FaultProxy("127.0.0.1", server.port, seed=2) as proxy:
            async with await rpc_connect("127.0.0.1", proxy.port, options=FAST) as rpc:
                calls = [asyncio.ensure_future(rpc.call("slow", f"t{i}", 0.3)) for i in range(50)]
                await until(lambda: len(counter.started) == 50)  # all running on the server
                proxy.cut("reset")  # the answers will come on the next connection
                async with asyncio.timeout(LIMIT):
                    assert await asyncio.gather(*calls) == [f"t{i}" for i in range(50)]
                assert counter.started == {f"t{i}": 1 for i in range(50)}
                assert rpc.session.resumes == 1

    run(main())


def test_remote_errors() -> None:
    async def main() -> None:
        counter = Counter()
        rpc_server = RpcServer(counter.registry)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                with pytest.raises(RemoteCallError) as err:
                    await rpc.call("fail", "x")
                assert (err.value.type, err.value.message) == ("ValueError", "bad value 'x'")
                assert str(err.value) == "ValueError: bad value 'x'"
                with pytest.raises(RemoteCallError) as err:
                    await rpc.call("fail", "key")
                assert err.value.type == "KeyError" and "no such key" in err.value.message
                with pytest.raises(RemoteCallError) as err:
                    await rpc.call("missing")
                assert err.value.type == "MethodNotFound"
                with pytest.raises(RemoteCallError) as err:
                    await rpc.call("incr", 1, 2, 3)  # wrong arguments
                assert err.value.type == "TypeError"
                with pytest.raises(TypeError):  # not JSON: refused before anything is sent
                    await rpc.call("echo", {1, 2})
                assert await rpc.call("echo", 1, "two", x=[3]) == [[1, "two"], {"x": [3]}]
                assert (await rpc.call("in_thread")).startswith("sessionlayer-rpc")  # its threads
        stats = rpc_server.stats
        assert stats.errors == 4 and stats.ok == 2 and stats.running == 0

    run(main())


def test_a_timeout_raises_and_cancels_the_call_on_the_server() -> None:
    async def main() -> None:
        counter = Counter()
        rpc_server = RpcServer(counter.registry)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                with pytest.raises(CallTimeout, match=r"within 0\.1 s"):
                    await rpc.call("slow", "a", 30, timeout=0.1)
                await until(lambda: counter.cancelled == 1)  # stopped on the server too:
                stats = rpc_server.stats  # by our cancel, or by its own copy of the timeout
                assert stats.cancelled + stats.timeouts == 1 and stats.running == 0
                assert isinstance(CallTimeout("x"), TimeoutError)
                # The timeout travels with the call: the server stops it too.
                assert await rpc.call("slow", "b", 0.01, timeout=5) == "b"

    run(main())


def test_the_server_enforces_the_callers_timeout_on_the_wire() -> None:
    """The timeout travels with the call: the server stops the call and answers
    ``Timeout`` itself (a raw session here, speaking the frames of docs/rpc.md)."""

    async def main() -> None:
        counter = Counter()
        rpc_server = RpcServer(counter.registry)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await sessionlayer.connect(
                "127.0.0.1", s.port, offers={"service": ["rpc"], "rpc-codec": ["json"]}
            ) as raw:
                await raw.send(b"C" + (7).to_bytes(8, "big")
                               + json.dumps(["slow", ["c", 30], None, 0.05]).encode())
                answer = await asyncio.wait_for(raw.receive(), LIMIT)
                assert answer[:9] == b"E" + (7).to_bytes(8, "big")
                assert json.loads(answer[9:])[0] == "Timeout"
                await raw.send(b"C" + (8).to_bytes(8, "big") + b"not json")
                answer = await asyncio.wait_for(raw.receive(), LIMIT)
                assert answer[:9] == b"E" + (8).to_bytes(8, "big")
                assert json.loads(answer[9:])[0] == "BadRequest"
                await raw.send(b"C" + (9).to_bytes(8, "big") + b'["incr",[5],null,null]')
                assert await asyncio.wait_for(raw.receive(), LIMIT) == (
                    b"R" + (9).to_bytes(8, "big") + b"5")
        assert rpc_server.stats.timeouts == 1 and counter.cancelled == 1

    run(main())


def test_cancelling_a_call_cancels_it_on_the_server() -> None:
    async def main() -> None:
        counter = Counter()
        async with await sessionlayer.serve(rpc_handler(counter.registry),
                                            supported=RPC_SUPPORTED) as s:  # fmt: skip
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                task = asyncio.ensure_future(rpc.call("slow", "c", 30))
                await until(lambda: "c" in counter.started)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await until(lambda: counter.cancelled == 1)
                assert rpc.in_flight == 0
                assert await rpc.call("incr") == 1  # the session goes on

    run(main())


def test_many_calls_in_flight_answer_in_any_order() -> None:
    async def main() -> None:
        counter = Counter()
        async with await sessionlayer.serve(rpc_handler(counter.registry),
                                            supported=RPC_SUPPORTED) as s:  # fmt: skip
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                delays = [(i * 7919 % 100) / 1000 for i in range(500)]
                results = await asyncio.wait_for(asyncio.gather(
                    *(rpc.call("slow", str(i), d) for i, d in enumerate(delays))), LIMIT)
                assert results == [str(i) for i in range(500)]

    run(main())


def test_a_duplicate_call_id_is_never_run_again() -> None:
    async def main() -> None:
        counter = Counter()
        rpc_server = RpcServer(counter.registry)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                assert await rpc.call("incr") == 1
                # The same call (id 1) again, as a faulty replay would send it.
                frame = b"C" + (1).to_bytes(8, "big") + rpc.codec.encode(["incr", [], None,
                                                                           None])
                await rpc.session.send(frame)
                assert await rpc.call("incr") == 2  # (after the duplicate, in order)
                assert counter.value == 2
                assert rpc_server.stats.duplicates == 1

    run(main())


def test_calls_in_flight_when_the_session_ends_are_lost_not_hung() -> None:
    async def main() -> None:
        counter = Counter()
        async with await sessionlayer.serve(rpc_handler(counter.registry),
                                            supported=RPC_SUPPORTED) as s:  # fmt: skip
            rpc = await rpc_connect("127.0.0.1", s.port)
            calls = [asyncio.ensure_future(rpc.call("slow", str(i), 30)) for i in range(5)]
            await until(lambda: len(counter.started) == 5)
            s.close()  # aborts every session
            for call in calls:
                with pytest.raises(CallLost):
                    await asyncio.wait_for(call, LIMIT)
            with pytest.raises(CallLost):
                await rpc.call("incr")
            await rpc.aclose()

    run(main())


def test_a_server_restart_loses_the_calls_in_flight_and_new_calls_work() -> None:
    async def main() -> None:
        counter = Counter()
        store = MemoryStore()
        first = await sessionlayer.serve(rpc_handler(counter.registry), supported=RPC_SUPPORTED,
                                         options=FAST, store=store)  # fmt: skip
        port = first.port
        rpc = await rpc_connect("127.0.0.1", port, options=FAST)
        assert await rpc.call("incr") == 1
        calls = [asyncio.ensure_future(rpc.call("slow", str(i), 30)) for i in range(3)]
        await until(lambda: len(counter.started) == 3)
        first.close(detach=True)
        await first.wait_closed()
        second = await sessionlayer.serve(rpc_handler(counter.registry), port=port,
                                          supported=RPC_SUPPORTED, options=FAST,
                                          store=store)  # fmt: skip
        async with second:
            for call in calls:
                with pytest.raises(CallLost, match="lost its state"):
                    await asyncio.wait_for(call, LIMIT)
            assert await asyncio.wait_for(rpc.call("incr"), LIMIT) == 2
            assert rpc.restores == 1
            # A call sent after the restore is not lost when another task, which had not
            # heard of the restore yet, calls (before: each task's news failed every call
            # in flight but its own, and counted one more restore).
            after = asyncio.ensure_future(rpc.call("slow", "after", 30))
            await until(lambda: counter.started.get("after") == 1)
            assert await asyncio.wait_for(asyncio.ensure_future(rpc.call("incr")), LIMIT) == 3
            assert not after.done() and rpc.restores == 1
            after.cancel()
            await rpc.aclose()

    run(main())


@pytest.mark.parametrize("codec", codecs())
def test_the_codec_is_agreed_at_connect(codec: str) -> None:
    async def main() -> None:
        counter = Counter()
        async with await sessionlayer.serve(rpc_handler(counter.registry),
                                            supported=RPC_SUPPORTED) as s:  # fmt: skip
            async with await rpc_connect("127.0.0.1", s.port, codec=codec) as rpc:
                assert rpc.session.chosen["rpc-codec"] == codec == rpc.codec.name
                assert await rpc.call("echo", "é", 1.5, None) == [["é", 1.5, None], {}]
            # A client that names no codec gets JSON.
            plain = await sessionlayer.connect("127.0.0.1", s.port,
                                               offers={"service": ["rpc"]})  # fmt: skip
            async with RpcClient(plain, owns_session=True) as rpc:
                assert rpc.codec.name == "json"
                assert await rpc.call("incr") == 1

    run(main())


def test_msgpack_carries_bytes() -> None:
    if "msgpack" not in codecs():
        unavailable("msgpack is not installed (the msgpack extra, in the test extra too)")

    async def main() -> None:
        counter = Counter()
        async with await sessionlayer.serve(rpc_handler(counter.registry),
                                            supported=RPC_SUPPORTED) as s:  # fmt: skip
            async with await rpc_connect("127.0.0.1", s.port, codec="msgpack") as rpc:
                assert await rpc.call("echo", b"\x00\xff") == [[b"\x00\xff"], {}]

    run(main())


def test_registry_rules() -> None:
    registry = Registry()

    @registry.method
    def one() -> int:
        return 1

    @registry.method(name="two", thread=True)
    def second() -> int:
        return 2

    assert "one" in registry and "two" in registry and len(registry) == 2
    with pytest.raises(ValueError, match="twice"):
        registry.register("one", one)
    with pytest.raises(ValueError, match="thread"):

        @registry.method(thread=True)
        async def coro() -> None:
            pass

    with pytest.raises(ValueError):
        registry.register("", one)
    with pytest.raises(ValueError, match="not available"):
        run(rpc_connect("127.0.0.1", 1, codec="yaml"))


def test_malformed_frames_and_results_that_cannot_be_encoded() -> None:
    async def main() -> None:
        counter = Counter()
        counter.registry.register("a_set", lambda: {1, 2})

        async def own_timeout() -> None:
            raise TimeoutError("the method's own")

        counter.registry.register("own_timeout", own_timeout)
        rpc_server = RpcServer(counter.registry)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await sessionlayer.connect(
                "127.0.0.1", s.port, offers={"service": ["rpc"], "rpc-codec": ["json"]}
            ) as raw:
                await raw.send(b"C12")  # too short: dropped
                await raw.send(b"Q" + (1).to_bytes(8, "big"))  # unknown type: dropped
                await raw.send(b"X" + (99).to_bytes(8, "big"))  # cancel of nothing
                await raw.send(b"C" + (2).to_bytes(8, "big") + b'["incr","notalist",null,null]')
                answer = await asyncio.wait_for(raw.receive(), LIMIT)
                assert answer[:1] == b"E" and json.loads(answer[9:])[0] == "BadRequest"
                assert rpc_server.progress(raw.id) is not None
                assert rpc_server.progress("nobody") is None
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                with pytest.raises(RemoteCallError) as err:
                    await rpc.call("a_set")
                assert err.value.type == "TypeError" and "cannot be encoded" in err.value.message
                with pytest.raises(RemoteCallError) as err:
                    await rpc.call("own_timeout", timeout=5)
                assert err.value.type == "TimeoutError"
        assert rpc_server.stats.as_dict()["errors"] == 3

    run(main())


def test_calls_past_max_running_wait_for_a_slot() -> None:
    async def main() -> None:
        counter = Counter()
        rpc_server = RpcServer(counter.registry, max_running=3)
        async with await sessionlayer.serve(rpc_server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                calls = [asyncio.ensure_future(rpc.call("slow", str(i), 0.05)) for i in range(12)]
                await until(lambda: len(counter.started) >= 3)
                assert rpc_server.stats.running <= 3
                results = await asyncio.wait_for(asyncio.gather(*calls), LIMIT)
                assert results == [str(i) for i in range(12)]

    run(main())
