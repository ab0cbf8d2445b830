"""Calls that used to break the server: a lone surrogate in a call (Python's own error
text then held it, and the error answer could not be encoded: the session was aborted, or
the call never answered, with an ERROR and its traceback), and a method that raises
SystemExit (argparse does on bad options: the whole server process ended)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

import pytest

import sessionlayer
from sessionlayer.apps.rpc import (
    RPC_SUPPORTED,
    Registry,
    RemoteCallError,
    RpcServer,
    rpc_connect,
)

from .helpers import LIMIT, run


def registry() -> Registry:
    methods = Registry()

    @methods.method
    def ok() -> str:
        return "ok"

    @methods.method
    async def later() -> str:
        return "later"

    @methods.method
    def parse(argv: list[str]) -> str:
        parser = argparse.ArgumentParser(prog="parse", exit_on_error=False)
        parser.add_argument("--known")
        return str(parser.parse_args(argv))  # (an unknown option: SystemExit 2)

    @methods.method(name="parse_async")
    async def parse_async(argv: list[str]) -> str:
        return parse(argv)

    @methods.method(name="parse_thread", thread=True)
    def parse_thread(argv: list[str]) -> str:
        return parse(argv)

    @methods.method
    def interrupted() -> None:
        raise KeyboardInterrupt

    return methods


def frame(cid: int, text: str) -> bytes:
    return b"C" + cid.to_bytes(8, "big") + text.encode()


async def raw_session(port: int) -> sessionlayer.Session:
    """A session to the RPC service whose frames the test writes itself (docs/rpc.md)."""
    return await sessionlayer.connect("127.0.0.1", port,
                                      offers={"service": ["rpc"], "rpc-codec": ["json"]})


@pytest.mark.parametrize("method", ["ok", "later"])
def test_a_lone_surrogate_in_a_call_is_an_error_answer(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        server = RpcServer(registry())
        async with await sessionlayer.serve(server.handle, supported=RPC_SUPPORTED) as s:
            async with await raw_session(s.port) as raw:
                # (the six characters \udc80 in the JSON text: a lone surrogate once decoded)
                await raw.send(frame(1, '["' + method + '",[],{"\\udc80":1},null]'))
                answer = await asyncio.wait_for(raw.receive(), LIMIT)
                assert answer[:9] == b"E" + (1).to_bytes(8, "big"), answer
                kind, text = json.loads(answer[9:])
                assert kind == "TypeError" and "unexpected keyword argument" in text, text
                assert "\\udc80" in text and "\udc80" not in text  # (escaped)
                await raw.send(frame(2, f'["{method}",[],null,null]'))
                answer = await asyncio.wait_for(raw.receive(), LIMIT)
                assert answer[:1] == b"R" and json.loads(answer[9:]) == method

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("method", ["parse", "parse_async", "parse_thread", "interrupted"])
def test_a_method_that_raises_system_exit_answers_it(method: str) -> None:
    async def main() -> None:
        server = RpcServer(registry())
        async with await sessionlayer.serve(server.handle, supported=RPC_SUPPORTED) as s:
            async with await rpc_connect("127.0.0.1", s.port) as rpc:
                args = [] if method == "interrupted" else [["--bogus"]]
                with pytest.raises(RemoteCallError) as info:
                    await rpc.call(method, *args, timeout=LIMIT)
                expected = "KeyboardInterrupt" if method == "interrupted" else "SystemExit"
                assert info.value.type == expected, info.value
                assert await rpc.call("ok", timeout=LIMIT) == "ok"  # the server goes on

    run(main())


def test_a_flood_of_duplicates_is_a_few_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """Each of 1,000 copies of one call was a WARNING line (a 9-octet frame each)."""

    async def main() -> None:
        server = RpcServer(registry())
        async with await sessionlayer.serve(server.handle, supported=RPC_SUPPORTED) as s:
            async with await raw_session(s.port) as raw:
                for _ in range(1001):
                    await raw.send(frame(1, '["ok",[],null,null]'))
                for _ in range(1001):  # the answer, then each duplicate's copy of it
                    answer = await asyncio.wait_for(raw.receive(), LIMIT)
                    assert answer[:9] == b"R" + (1).to_bytes(8, "big")
        assert server.stats.duplicates == 1000

    with caplog.at_level(logging.WARNING):
        run(main())
    said = [r for r in caplog.records if "arrived again" in r.getMessage()]
    assert len(said) == 10 and "(512 duplicates on this session)" in said[-1].getMessage()
