"""A protocol factory that raises (a bug of ours, in serve()'s or the relay's): asyncio
drops the error without a word outside its debug mode and leaves the accepted socket open
(until the garbage collector): every connection would hang, unseen.  serve_plain logs it,
one ERROR with the traceback, and resets that connection."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sessionlayer.aio.listening import serve_plain


def test_a_factory_that_raises_is_logged_and_its_connection_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("sessionlayer.test_listening")

    def factory() -> asyncio.Protocol:
        raise RuntimeError("a bug in the factory")

    async def main() -> bytes:
        server = await serve_plain(factory, "127.0.0.1", 0, 16, lambda _: None, log)
        try:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                try:
                    return await asyncio.wait_for(reader.read(), 5.0)  # (EOF: closed)
                except ConnectionResetError:
                    return b""  # (reset: closed)
            finally:
                writer.close()
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.ERROR, logger="sessionlayer.test_listening"):
        assert asyncio.run(main()) == b""
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "internal error" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "a bug in the factory" in str(errors[0].exc_info[1])
