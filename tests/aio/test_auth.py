"""The ready-made authentication callbacks, and credentials kept off clear-text links."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.tools import echo as _echo

import sessionlayer
from sessionlayer import ConnectRefused, LocalError
from sessionlayer.agent import Rejection
from sessionlayer.agent.hello import Hello
from sessionlayer.aio.server import ConnectRequest
from sessionlayer.machine import ConnectIndication
from sessionlayer.machine import events as ev


def request(credentials: dict[str, str] | None) -> ConnectRequest:
    indication: Any = ConnectIndication.__new__(ConnectIndication)
    return ConnectRequest(("127.0.0.1", 1), Hello(credentials=credentials), indication, None)


def test_check_passwords() -> None:
    check = sessionlayer.check_passwords({"ada": "s3cret", "bob": "hunter2"})
    assert check(request({"user": "ada", "password": "s3cret"}))
    assert check(request({"user": "bob", "password": "hunter2"}))
    assert not check(request({"user": "ada", "password": "hunter2"}))
    assert not check(request({"user": "eve", "password": "s3cret"}))
    assert not check(request({"user": "eve", "password": "\0 no such user \0"}))
    assert not check(request({}))
    assert not check(request(None))


def test_check_token() -> None:
    check = sessionlayer.check_token("abc123")
    assert check(request({"token": "abc123"}))
    assert not check(request({"token": "abc124"}))
    assert not check(request(None))


def test_credentials_refused_in_clear_text_off_loopback() -> None:
    async def main() -> None:
        with pytest.raises(LocalError, match="clear text"):
            await sessionlayer.connect("192.0.2.1", 102, credentials={"user": "a"})
        # A resume tries every one of ``addresses`` with the credentials too: each is
        # checked, before any socket is opened (nothing listens on port 9 here).
        with pytest.raises(LocalError, match=r"to 192\.0\.2\.7 in clear text"):
            await sessionlayer.connect("127.0.0.1", 9, credentials={"user": "a"},
                                       addresses=[("::1", 9), ("192.0.2.7", 102)])  # fmt: skip

    asyncio.run(main())


def test_passwords_end_to_end_over_loopback() -> None:
    async def echo(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data)

    async def main() -> None:
        check = sessionlayer.check_passwords({"ada": "s3cret"})
        async with await sessionlayer.serve(echo, authenticate=check) as server:
            creds = {"user": "ada", "password": "s3cret"}
            async with await sessionlayer.connect(
                "127.0.0.1", server.port, credentials=creds
            ) as session:
                await session.send(b"in")
                assert await session.receive() == b"in"
            with pytest.raises(ConnectRefused, match="authentication failed"):
                await sessionlayer.connect(
                    "127.0.0.1", server.port, credentials={"user": "ada", "password": "x"}
                )

    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_failing_authenticate_refuses_and_the_server_carries_on(asynchronous: bool) -> None:
    def broken(request: ConnectRequest) -> bool:
        raise RuntimeError("database down")

    async def broken_async(request: ConnectRequest) -> bool:
        raise RuntimeError("database down")

    async def main() -> None:
        check = broken_async if asynchronous else broken
        async with await sessionlayer.serve(lambda s: asyncio.sleep(0), authenticate=check) as srv:
            for _ in range(2):
                with pytest.raises(ConnectRefused, match="authentication error"):
                    await sessionlayer.connect("127.0.0.1", srv.port)
            assert srv.stats.refused["user_data"] == 2

    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_failing_accept_data_refuses_and_the_server_carries_on(asynchronous: bool) -> None:
    """``accept_data`` (the AC user data for an OSI peer) that raises refuses that one
    session, on the path without a task and after an async authenticate() alike."""

    def broken(request: ConnectRequest) -> bytes:
        raise RuntimeError("no answer")

    async def allow(request: ConnectRequest) -> bool:
        return True

    async def main() -> None:
        async with await sessionlayer.serve(
            lambda s: asyncio.sleep(0), accept_data=broken,
            authenticate=allow if asynchronous else None,
        ) as srv:  # fmt: skip
            for _ in range(2):
                with pytest.raises(ConnectRefused, match="could not answer the connect"):
                    await sessionlayer.connect("127.0.0.1", srv.port, user_data=b"osi")
            session = await sessionlayer.connect("127.0.0.1", srv.port)  # (not an OSI peer)
            session.abort()

    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.mark.parametrize("answer", [bytes(300), "text"], ids=["over-one-octet-li", "not-bytes"])
def test_accept_data_an_ac_cannot_carry_refuses_and_says_why(
    answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The libiec61850 profile keeps the AC within a one-octet LI (its client rejects any
    other): ``accept_data`` that gives more, or not bytes, refuses that connect with a log
    line that says why, instead of aborting it as a bug of ours; the next one is answered."""
    profile = sessionlayer.SessionConfig.libiec61850_profile(max_user_data=None)

    def accept_data(request: ConnectRequest) -> Any:
        return b"AARE" if request.data == b"short" else answer

    async def main() -> None:
        async with await sessionlayer.serve(lambda s: asyncio.sleep(0), config=profile,
                                            accept_data=accept_data) as srv:  # fmt: skip
            with pytest.raises(ConnectRefused, match="could not answer the connect"):
                await sessionlayer.connect("127.0.0.1", srv.port, user_data=b"long",
                                           config=profile)  # fmt: skip
            session = await sessionlayer.connect("127.0.0.1", srv.port, user_data=b"short",
                                                 config=profile)  # fmt: skip
            assert session.peer_data == b"AARE"
            session.abort()

    with caplog.at_level("ERROR", logger="sessionlayer"):
        asyncio.run(asyncio.wait_for(main(), 20))
    (record,) = [r for r in caplog.records if "accept_data()" in r.getMessage()]
    assert "an AC cannot carry" in record.getMessage() and record.exc_info is None
    assert ("one_octet_li" if isinstance(answer, bytes) else "must be bytes") in record.getMessage()


# ---------------------------------------------------------------- failing closed


class _Truthy:
    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "<truthy>"


NOT_A_VERDICT = [None, 0, 1, "", "no", "True", [], [True], _Truthy(), 1.0]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("answer", NOT_A_VERDICT, ids=[repr(v) for v in NOT_A_VERDICT])
def test_authenticate_that_returns_neither_true_nor_false_refuses(
    answer: Any, asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Only True accepts: anything else that authenticate() returns (falsy or truthy)
    refuses, with one ERROR line naming what it returned; True still accepts."""

    def check(request: ConnectRequest) -> Any:
        return True if (request.credentials or {}).get("user") == "ok" else answer

    async def check_async(request: ConnectRequest) -> Any:
        return check(request)

    async def main() -> None:
        async with await sessionlayer.serve(
            _echo, authenticate=check_async if asynchronous else check
        ) as server:  # fmt: skip
            with pytest.raises(ConnectRefused, match="authentication error"):
                await sessionlayer.connect("127.0.0.1", server.port, credentials={"user": "x"})
            session = await sessionlayer.connect("127.0.0.1", server.port,
                                                 credentials={"user": "ok"})  # fmt: skip
            await session.send(b"in")
            assert await asyncio.wait_for(session.receive(), 10) == b"in"
            session.abort()
            assert server.stats.accepted == 1 and server.stats.refused["user_data"] == 1

    with caplog.at_level("INFO", logger="sessionlayer"):
        asyncio.run(asyncio.wait_for(main(), 20))
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, caplog.text
    message = errors[0].getMessage()
    assert f"authenticate() returned {answer!r}" in message and "refusing" in message
    assert errors[0].exc_info is None


def test_authenticate_that_returns_neither_refuses_a_resume_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a resume (authenticate() runs again) a verdict that is not True refuses it too,
    finally: the session ends with ResumeRefused("refused")."""
    from tests.recovery.helpers import raw_resume, token_of

    def check(request: ConnectRequest) -> Any:
        return None if request.resuming else True

    async def main() -> None:
        async with await sessionlayer.serve(_echo, authenticate=check) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port)
            await client.send(b"x")
            assert await asyncio.wait_for(client.receive(), 10) == b"x"
            event, rejection = await raw_resume(server.port, token_of(client))
            assert isinstance(event, ev.RefuseConfirm), (event, rejection)
            assert isinstance(rejection, Rejection) and rejection.code == "resume:refused"
            assert "authentication" in rejection.message
            client.abort()

    with caplog.at_level("ERROR", logger="sessionlayer"):
        asyncio.run(asyncio.wait_for(main(), 20))
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "authenticate() returned None" in record.getMessage()


def test_the_ready_made_callbacks_return_bools() -> None:
    passwords = sessionlayer.check_passwords({"ada": "s3cret"})
    token = sessionlayer.check_token("abc123")
    for check, good, bad in (
        (passwords, {"user": "ada", "password": "s3cret"}, {"user": "ada", "password": "x"}),
        (token, {"token": "abc123"}, {"token": "x"}),
    ):
        assert check(request(good)) is True
        for creds in (bad, {}, None):
            assert check(request(creds)) is False


# ---------------------------------------------------------------- credentials that do not encode

SURROGATES = ["\ud800", "\udfff", "s3cret\ud800", "\ud83d\ude00"]


@pytest.mark.parametrize("odd", SURROGATES, ids=[ascii(s) for s in SURROGATES])
def test_lone_surrogates_in_credentials_are_a_plain_mismatch(odd: str) -> None:
    """A lone surrogate (JSON "\\ud800" decodes to one) cannot be encoded as strict UTF-8:
    it is one more wrong secret, not an exception."""
    passwords = sessionlayer.check_passwords({"ada": "s3cret", odd: "p"})
    assert passwords(request({"user": "ada", "password": odd})) is False
    assert passwords(request({"user": odd, "password": "s3cret"})) is False
    assert passwords(request({"user": odd, "password": "p"})) is True  # (a name like any)
    assert passwords(request({"user": "\udfff\ud800", "password": "p"})) is False
    token = sessionlayer.check_token("abc123")
    assert token(request({"token": odd})) is False
    assert sessionlayer.check_token(odd)(request({"token": odd})) is True
    assert sessionlayer.check_token(odd)(request({"token": odd + "x"})) is False


def test_lone_surrogates_over_the_wire_are_refused_without_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        for check in (sessionlayer.check_passwords({"ada": "s3cret"}),
                      sessionlayer.check_token("abc123")):  # fmt: skip
            async with await sessionlayer.serve(_echo, authenticate=check) as server:
                for creds in ({"user": "ada", "password": "\ud800"}, {"user": "\udfff"},
                              {"token": "\ud800"}):  # fmt: skip
                    with pytest.raises(ConnectRefused, match="authentication failed"):
                        await sessionlayer.connect("127.0.0.1", server.port, credentials=creds)

    with caplog.at_level("INFO", logger="sessionlayer"):
        asyncio.run(asyncio.wait_for(main(), 20))
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
