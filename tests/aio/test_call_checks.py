"""connect() and serve() refuse bad arguments at the call, naming them (aio/checks.py):
TLS contexts for the wrong side, ports out of range, malformed further addresses and
negotiation choices.  Nothing is opened for them.  And a TLS server's failed handshakes
reach its log as one WARNING a minute, with a count, never asyncio's exception handler."""

from __future__ import annotations

import asyncio
import logging
import ssl
import typing
from typing import Any

import pytest
from tests.tools import echo, tls_contexts

import sessionlayer
from sessionlayer.aio import tls_accept
from sessionlayer.aio.sockets import unreachable


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_a_tls_context_for_the_other_side_is_refused_at_the_call() -> None:
    server_ctx, client_ctx = tls_contexts()

    async def main() -> None:
        with pytest.raises(ValueError, match="client-side context"):
            await sessionlayer.serve(echo, tls=client_ctx)
        with pytest.raises(TypeError, match=r"tls must be an ssl\.SSLContext"):
            await sessionlayer.serve(echo, tls="server.pem")  # type: ignore[arg-type]
        async with await sessionlayer.serve(echo, tls=server_ctx) as server:
            with pytest.raises(ValueError, match="server-side context"):
                await sessionlayer.connect("127.0.0.1", server.port, tls=server_ctx)
            with pytest.raises(TypeError, match=r"tls must be an ssl\.SSLContext"):
                await sessionlayer.connect("127.0.0.1", server.port,
                                           tls=True)  # type: ignore[arg-type]  # fmt: skip
            assert server.stats.accepted == 0  # (nothing was opened)
            session = await sessionlayer.connect("127.0.0.1", server.port, tls=client_ctx,
                                                 server_hostname="localhost")  # fmt: skip
            await session.release()

    run(main())


def test_ports_and_further_addresses_are_checked_at_the_call() -> None:
    async def main() -> None:
        for bad in (-1, 65536, 70000, "102", 1.5, True):
            with pytest.raises(ValueError, match="port must be an int from 0 to 65535"):
                await sessionlayer.serve(echo, port=bad)  # type: ignore[arg-type]
        async with await sessionlayer.serve(echo) as server:
            port = server.port
            for addresses, match in (
                ("host:102", "addresses must be a list"),
                (5, "addresses must be a list"),
                ([("127.0.0.1", port), "127.0.0.1"], r"addresses\[1\] must be a \(host, port\)"),
                ([("127.0.0.1",)], r"addresses\[0\] must be a \(host, port\)"),
                ([("", port)], r"addresses\[0\] must be a \(host, port\)"),
                ([(None, port)], r"addresses\[0\] must be a \(host, port\)"),
                ([("127.0.0.1", 0)], r"port of addresses\[0\] must be an int from 1"),
                ([("127.0.0.1", 65536)], r"port of addresses\[0\] must be an int from 1"),
                ([("127.0.0.1", "102")], r"port of addresses\[0\] must be an int from 1"),
            ):
                with pytest.raises((TypeError, ValueError), match=match):
                    await sessionlayer.connect("127.0.0.1", port, addresses=addresses)
            assert server.stats.accepted == 0
            # Lists as pairs are taken too; no further address is no error.
            for addresses in ([["127.0.0.1", port]], []):
                session = await sessionlayer.connect("127.0.0.1", port, addresses=addresses)
                await session.release()
        # 0 is any free port for a listener.
        async with await sessionlayer.serve(echo, port=0) as server:
            assert 0 < server.port < 65536

    run(main())


@pytest.mark.parametrize(("choices", "error", "match"), [
    (["codec"], TypeError, "must map each parameter name"),
    ({"codec": "json"}, TypeError, r"\['codec'\] must be a list of strings"),
    ({"codec": [1]}, TypeError, r"\['codec'\] must be a list of strings"),
    ({1: ["json"]}, TypeError, "a parameter name is a str"),
    ({"": ["json"]}, ValueError, "a parameter name must not be empty"),
    ({"codec": []}, ValueError, "must list at least one value"),
    ({"codec": ["json", ""]}, ValueError, "none of them empty"),
])  # fmt: skip
def test_negotiation_choices_are_checked_at_the_call(choices: Any, error: type[Exception],
                                                     match: str) -> None:  # fmt: skip
    async def main() -> None:
        with pytest.raises(error, match="^supported.*" + match):
            await sessionlayer.serve(echo, supported=choices)
        async with await sessionlayer.serve(echo) as server:
            with pytest.raises(error, match="^offers.*" + match):
                await sessionlayer.connect("127.0.0.1", server.port, offers=choices)
            assert server.stats.accepted == 0

    run(main())


def test_a_str_of_supported_values_is_not_taken_for_its_letters() -> None:
    """``supported={"codec": "json"}`` was ``["j", "s", "o", "n"]``: a client offering "j"
    was accepted with codec "j"."""

    async def main() -> None:
        with pytest.raises(TypeError):
            await sessionlayer.serve(echo, supported={"codec": "json"})  # type: ignore[dict-item]
        async with await sessionlayer.serve(echo, supported={"codec": ["json"]}) as server:
            with pytest.raises(sessionlayer.ConnectRefused, match="no common codec"):
                await sessionlayer.connect("127.0.0.1", server.port, offers={"codec": ["j"]})

    run(main())


def test_failed_tls_handshakes_are_one_warning_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_ctx, _ = tls_contexts()
    handled: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: handled.append(c))
        async with await sessionlayer.serve(echo, tls=server_ctx) as server:

            async def failing_client() -> None:
                # (a client without TLS: its COTP CR is no TLS hello)
                with pytest.raises(sessionlayer.SessionAborted, match="does it expect TLS"):
                    await sessionlayer.connect("127.0.0.1", server.port)
                # (the server's side of that handshake is over once its slot is free)
                while server.handshakes:
                    await asyncio.sleep(0.01)

            for _ in range(3):
                await failing_client()
            assert len(warned()) == 1
            monkeypatch.setattr(tls_accept, "TLS_WARNING_INTERVAL", 0.0)
            await failing_client()

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "TLS handshake" in r.getMessage()]  # fmt: skip

    with caplog.at_level("WARNING", logger="sessionlayer"):
        run(main())
    first, second = warned()
    assert "failed" in first and "more" not in first
    assert "(2 more TLS handshakes failed since the last warning)" in second
    assert not any(r.exc_info for r in caplog.records)
    assert handled == []


def test_the_relay_checks_its_listener_and_upstream_alike() -> None:
    from sessionlayer import relay

    server_ctx, client_ctx = tls_contexts()

    async def main() -> None:
        for kwargs, error, match in (
            ({"port": 70000}, ValueError, "port must be an int from 0 to 65535"),
            ({"tls": client_ctx}, ValueError, "client-side context"),
            ({"upstream_tls": server_ctx}, ValueError, "server-side context"),
            ({"upstream": ("127.0.0.1", 0)}, ValueError, "the port of upstream must be"),
            ({"upstream": "127.0.0.1:102"}, ValueError, r"upstream must be a \(host, port\)"),
        ):
            args: dict[str, Any] = {"upstream": ("127.0.0.1", 102), **kwargs}
            with pytest.raises(error, match=match):
                await relay.start(args.pop("upstream"), **args)

    run(main())


def test_a_tls_failure_is_said_in_its_own_words_and_addresses_in_brackets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An ssl.SSLError is an OSError with errno 1: unreachable() said "Operation not
    permitted" for an untrusted certificate (``tunnel --tls``, a resume try); and the
    server's TLS warning wrote an IPv6 peer as a socket tuple ('::1', 34308, 0, 0)."""
    server_ctx, _ = tls_contexts()

    async def main() -> None:
        async with await sessionlayer.serve(echo, "::1", tls=server_ctx) as server:
            with pytest.raises(ssl.SSLCertVerificationError) as caught:
                await sessionlayer.connect("::1", server.port, tls=ssl.create_default_context(),
                                           server_hostname="localhost")  # fmt: skip
            assert unreachable(caught.value).startswith("TLS: certificate verify failed: ")
            with pytest.raises(sessionlayer.SessionAborted):  # (no TLS: no TLS hello)
                await sessionlayer.connect("::1", server.port)
            while server.handshakes:
                await asyncio.sleep(0.01)

    with caplog.at_level("WARNING", logger="sessionlayer"):
        run(main())
    warned = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert warned and all("with [::1]:" in m for m in warned), warned


def test_the_send_calls_say_in_their_types_that_they_take_any_octets() -> None:
    """send(), send_typed() and send_expedited() take bytes, bytearray or memoryview (the
    docs say so, and the code copies any buffer): their hints say so too, or a caller under
    mypy --strict gets an error for a bytearray."""
    for name in ("send", "send_typed", "send_expedited"):
        hint = typing.get_type_hints(getattr(sessionlayer.Session, name))["data"]
        assert set(typing.get_args(hint)) == {bytes, bytearray, memoryview}, (name, hint)
