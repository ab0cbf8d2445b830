"""Malformed resume tokens: whatever a peer puts in its hello's ``resume`` field, the token
is refused as ``token_invalid`` (an RF, final for the client) and nothing else is raised,
in :func:`parse` and :func:`verify` and on the server's whole resume path."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.tools import echo as _echo

import sessionlayer
from sessionlayer.agent import Rejection
from sessionlayer.errors import ResumeRefused
from sessionlayer.machine import events as ev
from sessionlayer.recovery import ANONYMOUS, issue, parse, verify

from .helpers import FAST, LIMIT, raw_resume, run, token_of

SECRET = b"k" * 32
SID = "0123456789abcdef" * 2
MAC = issue(SECRET, SID, 0, ANONYMOUS).rsplit(".", 1)[1]


def _malformed(sid: str = SID, mac: str = MAC) -> list[str]:
    """Tokens of session ``sid`` that are not well-formed: each is refused."""
    return [
        f"{sid}.\u00b2.{mac}",  # superscript two: str.isdigit(), not int()
        f"{sid}.\u0660.{mac}",  # Arabic-Indic zero: int() reads 0 (an alias)
        f"{sid}.\uff11.{mac}",  # fullwidth one
        f"{sid}.00.{mac}",  # a leading zero (an alias of generation 0)
        f"{sid}.01.{mac}",
        f"{sid}.+1.{mac}",
        f"{sid}.-1.{mac}",
        f"{sid}. 1.{mac}",
        f"{sid}.1_0.{mac}",
        f"{sid}..{mac}",  # no generation
        f"{sid}.1234567890.{mac}",  # ten digits
        f"{sid}.0.{mac}.",  # an extra dot
        f"{sid}.0.0.{mac}",
        f"{sid}0{mac}",  # no dot
        f"{sid}.0{mac}",  # one dot
        f"{sid.upper()}.0.{mac}",
        f"{sid}.0.{mac.upper()}",
        f"{sid[:-1]}\u0661.0.{mac}",  # a non-ASCII digit in the id
        f"{sid}.0.{mac[:-1]}\ud800",  # a lone surrogate
        f"{sid}.0.{mac[:-1]}\0",
        f"{sid}.0.{mac}\n",
        "",
        ".",
        "..",
        "...",
        "\ud800",
        "x" * 10_000,  # huge
        f"{sid}.0.{mac}" + "0" * 200,
    ]


@pytest.mark.parametrize("token", _malformed(), ids=range(len(_malformed())))
def test_a_malformed_token_is_token_invalid_and_nothing_else(token: str) -> None:
    with pytest.raises(ResumeRefused) as info:
        parse(token)
    assert info.value.code == "token_invalid"
    with pytest.raises(ResumeRefused) as info:
        verify(SECRET, token, generation=0, identity=ANONYMOUS, presenter=ANONYMOUS)
    assert info.value.code == "token_invalid"


@pytest.mark.parametrize("token", [b"", b"x" * 80, None, 5, ["a", "b"]])
def test_what_is_not_text_is_token_invalid(token: object) -> None:
    with pytest.raises(ResumeRefused) as info:
        parse(token)  # type: ignore[arg-type]
    assert info.value.code == "token_invalid"


def _token_like() -> st.SearchStrategy[str]:
    """Text, and text near a token's shape (three parts, digits of every script)."""
    part = st.text(st.sampled_from("0123456789abcdefABCDEF.\u00b2\u0660\uff11\ud800 x"),
                   max_size=40)  # fmt: skip
    digits = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=10)
    shaped = st.builds(lambda sid, gen, mac: f"{sid}.{gen}.{mac}",
                       st.one_of(st.just(SID), part), st.one_of(digits, part),
                       st.one_of(st.just(MAC), part))  # fmt: skip
    return st.one_of(st.text(max_size=200), part, shaped)


@settings(max_examples=500, deadline=None)
@given(_token_like())
def test_parse_takes_one_spelling_per_token_and_raises_nothing_else(token: str) -> None:
    try:
        sid, generation = parse(token)
    except ResumeRefused as exc:
        assert exc.code == "token_invalid"
        return
    # Accepted: exactly what issue() would have made (no alias of another spelling).
    assert token == f"{sid}.{generation}.{token.rsplit('.', 1)[1]}"
    assert 0 <= generation < 10**9 and token.isascii()


def _code(answer: tuple[ev.Event, object]) -> str:
    event, rejection = answer
    assert isinstance(event, ev.RefuseConfirm), answer
    assert isinstance(rejection, Rejection)
    return rejection.code


@pytest.mark.parametrize("authenticate", [None, lambda request: True],
                         ids=["no-authenticate", "authenticate"])  # fmt: skip
def test_a_malformed_token_over_the_wire_gets_a_final_rf(
    authenticate: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Each malformed token, those of the live session's own id among them (what the
    server looks up first, before any task), is refused with an RF "token_invalid": no
    internal error, no connection closed without an answer; the session is unharmed."""

    async def main() -> None:
        async with await sessionlayer.serve(_echo, options=FAST,
                                            authenticate=authenticate) as server:  # type: ignore[arg-type]  # fmt: skip
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            await client.send(b"x")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"x"
            sid, _, mac = token_of(client).split(".")
            tokens = _malformed(sid, mac)
            for token in tokens:
                assert _code(await raw_resume(server.port, token)) == "resume:token_invalid"
            assert server.stats.resume_refused == {"token_invalid": len(tokens)}
            await client.send(b"still here")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"still here"
            client.abort()

    with caplog.at_level(logging.WARNING, logger="sessionlayer"):
        run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_client_with_a_malformed_token_stops_at_once() -> None:
    """The client's own retries end at the first answer (final), long before give_up."""

    async def main() -> None:
        async with await sessionlayer.serve(_echo, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            await client.send(b"x")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"x"
            link = client._conn.link
            assert link is not None and link.token is not None
            sid, _, mac = link.token.split(".")
            link.token = f"{sid}.\u00b2.{mac}"
            transport = client._conn.transport
            assert transport is not None
            transport.abort()  # the connection is lost: the client resumes with that token
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ResumeRefused) as info:
                async with asyncio.timeout(LIMIT):
                    while True:
                        await client.send(b"y")
                        await client.receive()
            assert info.value.code == "token_invalid"
            assert loop.time() - started < FAST.backoff.give_up / 2
            assert server.stats.resume_refused == {"token_invalid": 1}

    run(main())
