"""Every X.215 service through the Session API, between two sessionlayer peers.

Each test runs over real TCP and over real TLS on loopback.  ``pair()`` gives the
initiator's session and the responder's (the one the server's handler got); the test
drives both and reads what arrives on ``events()`` / ``receive()``.  Nothing sleeps: each
step waits for the event or confirm it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
from tests import tools

import sessionlayer
from sessionlayer import (
    AbortReason,
    ExceptionReason,
    ReleaseRefused,
    ResyncType,
    SessionAborted,
    SessionConfig,
    Token,
    TokenSetting,
)
from sessionlayer import FunctionalUnit as FU
from sessionlayer.machine import events as ev
from sessionlayer.spdu.types import ConnectionId

E = TypeVar("E", bound=ev.Event)

DUPLEX = FU.DUPLEX | FU.EXPEDITED | FU.TYPED_DATA | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC
HALF = FU.HALF_DUPLEX | FU.TYPED_DATA | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC
ACTIVITIES = FU.DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.ACTIVITY


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 8))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tools.tls_contexts()


@pytest.fixture(params=["tcp", "tls"])
def tls(
    request: pytest.FixtureRequest, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    return tls_contexts if request.param == "tls" else None


@contextlib.asynccontextmanager
async def pair(
    units: FU,
    tls: tuple[ssl.SSLContext, ssl.SSLContext] | None,
    **config: Any,
) -> AsyncIterator[tuple[sessionlayer.Session, sessionlayer.Session]]:
    """(initiator's session, responder's session) over loopback, with these units."""
    cfg = SessionConfig(functional_units=units, **config)
    accepted: asyncio.Future[sessionlayer.Session] = asyncio.get_running_loop().create_future()

    async def handler(session: sessionlayer.Session) -> None:
        accepted.set_result(session)
        await session.wait_closed()

    # An exception in a protocol callback is only logged by asyncio: collect them instead.
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    server_tls, client_tls = tls if tls is not None else (None, None)
    async with await sessionlayer.serve(handler, config=cfg, tls=server_tls) as server:
        client = await sessionlayer.connect(
            "127.0.0.1", server.port, config=cfg, tls=client_tls,
            server_hostname="localhost" if client_tls else None,
        )  # fmt: skip
        peer = await accepted
        assert peer.id == client.id
        assert client.machine.functional_units == units == peer.machine.functional_units
        try:
            yield client, peer
        finally:
            client.abort()
    assert not errors, errors


async def next_event(session: sessionlayer.Session, kind: type[E]) -> E:
    """The next event on ``session.events()``; it must be a ``kind``."""
    async for event in session.events():
        assert isinstance(event, kind), event
        return event
    raise AssertionError(f"the session ended before a {kind.__name__}")


async def skip_to(session: sessionlayer.Session, kind: type[E]) -> E:
    """The first event of ``kind``, skipping others (token traffic, for example)."""
    async for event in session.events():
        if isinstance(event, kind):
            return event
    raise AssertionError(f"the session ended before a {kind.__name__}")


# ---------------------------------------------------------------- data services


def test_typed_data_is_an_event(tls: Any) -> None:
    async def main() -> None:
        async with pair(HALF, tls) as (client, peer):
            assert not peer.tokens & Token.DATA  # typed data needs no data token
            await peer.send_typed(b"typed from the responder")
            got = await next_event(client, ev.TypedDataIndication)
            assert got.data == b"typed from the responder"
            await client.send_typed(b"and back")
            assert (await next_event(peer, ev.TypedDataIndication)).data == b"and back"
            await client.release()

    run(main())


def test_expedited_data(tls: Any) -> None:
    async def main() -> None:
        async with pair(DUPLEX, tls) as (client, peer):
            await client.send_expedited(b"urgent!")
            got = await next_event(peer, ev.ExpeditedDataIndication)
            assert got.data == b"urgent!"
            await peer.send_expedited(b"x" * 14)
            assert (await next_event(client, ev.ExpeditedDataIndication)).data == b"x" * 14
            with pytest.raises(sessionlayer.LocalError):
                await client.send_expedited(b"x" * 15)  # EX carries at most 14 octets
            await client.send(b"still fine")
            assert await peer.receive() == b"still fine"
            await client.release()

    run(main())


def test_capability_data_both_ways(tls: Any) -> None:
    async def main() -> None:
        async with pair(FU.DUPLEX | FU.ACTIVITY | FU.CAPABILITY_DATA, tls) as (client, peer):
            assert await client.capability_data(b"caps?") is None
            got = await next_event(peer, ev.CapabilityDataIndication)
            assert got.user_data == b"caps?"
            # The responder holds no token: the binding asks for them first.
            assert peer.tokens == 0
            assert await peer.capability_data(b"mine") is None
            please = await next_event(client, ev.TokenPleaseIndication)
            assert please.tokens == Token.MAJOR_ACTIVITY
            cd = await next_event(client, ev.CapabilityDataIndication)
            assert cd.user_data == b"mine"
            await client.release()  # takes the tokens back first

    run(main())


def test_half_duplex_data_token_moves_by_itself(tls: Any) -> None:
    async def main() -> None:
        async with pair(HALF, tls) as (client, peer):
            assert client.tokens & Token.DATA and not peer.tokens & Token.DATA

            async def echo() -> None:
                async for data in peer:
                    await peer.send(data.upper())

            echoing = asyncio.ensure_future(echo())
            for i in range(20):
                await client.send(b"ping %d" % i)
                assert await client.receive() == b"PING %d" % i
            # Both sides sending at once: the token goes back and forth, nobody stalls.
            words = [b"w%d" % i for i in range(50)]
            for word in words:
                await client.send(word)
            for word in words:
                assert await client.receive() == word.upper()
            await client.release()
            await echoing

    run(main())


def test_half_duplex_both_sides_write_concurrently(tls: Any) -> None:
    """Two writer tasks on each side, all wanting the one data token."""

    async def main() -> None:
        async with pair(HALF, tls) as (client, peer):
            count = 150

            async def write(session: sessionlayer.Session, tag: bytes) -> None:
                for i in range(count):
                    await session.send(tag + b"%d" % i)
                    # Let the other tasks run between sends, so that PLEASE TOKENS from
                    # both sides cross on the wire (a token given back before it was used,
                    # or given away while a second task waited for it, once left a side
                    # waiting for ever).
                    await asyncio.sleep(0)

            async def read(session: sessionlayer.Session, tags: tuple[bytes, bytes]) -> None:
                got: dict[bytes, list[bytes]] = {tag: [] for tag in tags}
                for _ in range(2 * count):
                    data = await session.receive()
                    got[data[:1]].append(data)
                for tag in tags:  # each writer's messages arrive in its order
                    assert got[tag] == [tag + b"%d" % i for i in range(count)]

            await asyncio.gather(
                write(client, b"a"), write(client, b"b"), write(peer, b"s"), write(peer, b"t"),
                read(peer, (b"a", b"b")), read(client, (b"s", b"t")),
            )  # fmt: skip
            await client.release()

    run(main())


# ---------------------------------------------------------------- tokens


def test_token_give_please_and_control(tls: Any) -> None:
    async def main() -> None:
        units = FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.ACTIVITY
        async with pair(units, tls) as (client, peer):
            everything = Token.DATA | Token.MINOR_SYNC | Token.MAJOR_ACTIVITY
            assert client.tokens == everything and peer.tokens == 0
            # S-TOKEN-GIVE
            client.give_tokens(Token.DATA, user_data=b"yours")
            given = await next_event(peer, ev.TokenGiveIndication)
            assert (given.tokens, given.user_data) == (Token.DATA, b"yours")
            assert peer.tokens == Token.DATA
            # S-TOKEN-PLEASE: the peer's binding gives the token as soon as it may.
            peer.please_tokens(Token.MINOR_SYNC, user_data=b"may I")
            please = await next_event(client, ev.TokenPleaseIndication)
            assert please.tokens == Token.MINOR_SYNC and please.user_data == b"may I"
            assert (await next_event(peer, ev.TokenGiveIndication)).tokens == Token.MINOR_SYNC
            assert peer.tokens == Token.DATA | Token.MINOR_SYNC
            assert client.tokens == Token.MAJOR_ACTIVITY
            # S-CONTROL-GIVE needs every token: the responder's binding asks for the last one.
            await peer.give_control()
            await skip_to(client, ev.ControlGiveIndication)
            assert client.tokens == everything and peer.tokens == 0
            # (the responder saw the major/activity token arrive before it gave control)
            assert (await next_event(peer, ev.TokenGiveIndication)).tokens == Token.MAJOR_ACTIVITY
            await client.give_control()
            await next_event(peer, ev.ControlGiveIndication)
            assert peer.tokens == everything and client.tokens == 0
            async with peer.activity(b"ctl"):  # with activities, data goes in one
                await peer.send(b"with every token")
            assert await client.receive() == b"with every token"
            await client.release()

    run(main())


# ---------------------------------------------------------------- synchronization


def test_minor_sync_with_and_without_confirmation(tls: Any) -> None:
    async def main() -> None:
        async with pair(DUPLEX, tls, initial_serial=10) as (client, peer):
            first = await client.sync(user_data=b"point")
            assert first == 10
            got = await next_event(peer, ev.MinorSyncIndication)
            assert (got.serial, got.confirm_required, got.user_data) == (10, True, b"point")
            second = await client.sync(confirm=False)
            assert second == 11
            got = await next_event(peer, ev.MinorSyncIndication)
            assert (got.serial, got.confirm_required) == (11, False)
            assert peer.last_sync == 11
            # The responder lacks the minor-sync token: its binding asks for it.
            third = await peer.sync()
            assert third == 12
            assert (await next_event(client, ev.TokenPleaseIndication)).tokens == Token.MINOR_SYNC
            assert (await next_event(client, ev.MinorSyncIndication)).serial == 12
            await client.release()

    run(main())


def test_major_sync(tls: Any) -> None:
    async def main() -> None:
        async with pair(DUPLEX, tls) as (client, peer):
            await client.send(b"before")
            serial = await client.sync(major=True, user_data=b"checkpoint")
            assert await peer.receive() == b"before"
            got = await next_event(peer, ev.MajorSyncIndication)
            assert (got.serial, got.user_data) == (serial, b"checkpoint")
            assert client.last_sync == serial == peer.last_sync
            assert client.machine.vr == serial + 1 == peer.machine.vr
            # From the responder: major/activity and minor tokens are fetched first.
            again = await peer.sync(major=True)
            assert again == serial + 1
            assert (await skip_to(client, ev.MajorSyncIndication)).serial == again
            await client.release()

    run(main())


def test_resynchronize_restart_abandon_set(tls: Any) -> None:
    async def main() -> None:
        async with pair(HALF, tls) as (client, peer):
            base = await client.sync(major=True)
            await next_event(peer, ev.MajorSyncIndication)
            await client.sync()
            await next_event(peer, ev.MinorSyncIndication)
            # restart: back to the last major sync point
            serial = await client.resync(ResyncType.RESTART, serial=base + 1, user_data=b"r")
            assert serial == base + 1
            got = await next_event(peer, ev.ResyncIndication)
            assert (got.type, got.serial, got.user_data) == (ResyncType.RESTART, base + 1, b"r")
            # abandon: a new serial number at least V(M)
            serial = await client.resync(ResyncType.ABANDON)
            got = await next_event(peer, ev.ResyncIndication)
            assert got.type == ResyncType.ABANDON and serial == got.serial
            # set: any serial number, and give the data token to the peer on the way
            serial = await client.resync(
                ResyncType.SET, serial=500, tokens={Token.DATA: TokenSetting.RESPONDER}
            )
            assert serial == 500
            got = await next_event(peer, ev.ResyncIndication)
            assert (got.type, got.serial) == (ResyncType.SET, 500)
            assert got.tokens[Token.DATA] == TokenSetting.RESPONDER
            assert peer.tokens & Token.DATA and not client.tokens & Token.DATA
            assert client.machine.vm == 500 == peer.machine.vm
            await peer.send(b"after resync")
            assert await client.receive() == b"after resync"
            # The responder asks for a resync too (no token needed).
            assert await peer.resync(ResyncType.SET, serial=7) == 7
            assert (await next_event(client, ev.ResyncIndication)).serial == 7
            await client.release()

    run(main())


# ---------------------------------------------------------------- activities


def test_activity_start_data_sync_end(tls: Any) -> None:
    async def main() -> None:
        async with pair(ACTIVITIES, tls) as (client, peer):
            async with client.activity(b"act-1", user_data=b"go"):
                await client.send(b"inside")
                serial = await client.sync()
            got = await next_event(peer, ev.ActivityStartIndication)
            assert (got.activity_id, got.user_data) == (b"act-1", b"go")
            assert await peer.receive() == b"inside"
            assert (await next_event(peer, ev.MinorSyncIndication)).serial == serial
            end = await next_event(peer, ev.ActivityEndIndication)
            assert end.serial == serial + 1
            assert not client.machine.activity_in_progress
            assert not peer.machine.activity_in_progress
            await client.release()

    run(main())


def test_activity_interrupt_then_resume_with_linking(tls: Any) -> None:
    async def main() -> None:
        async with pair(ACTIVITIES, tls) as (client, peer):
            async with client.activity(b"long"):
                await client.send(b"part 1")
                checkpoint = await client.sync()
                await client.interrupt_activity(ExceptionReason.LOCAL_USER_ERROR, b"later")
            assert not client.machine.activity_in_progress
            await next_event(peer, ev.ActivityStartIndication)
            assert await peer.receive() == b"part 1"
            await next_event(peer, ev.MinorSyncIndication)
            got = await next_event(peer, ev.ActivityInterruptIndication)
            assert (got.reason, got.user_data) == (ExceptionReason.LOCAL_USER_ERROR, b"later")
            # Resume it under a new id, pointing back at the old one and its checkpoint.
            old = ConnectionId(common_ref=bytes.fromhex(client.id))
            await client.resume_activity(
                b"long-2", b"long", checkpoint, old_connection_id=old, user_data=b"again"
            )
            resumed = await next_event(peer, ev.ActivityResumeIndication)
            assert resumed.activity_id == b"long-2"
            assert resumed.old_activity_id == b"long"
            assert resumed.serial == checkpoint
            assert resumed.linking.common_ref == bytes.fromhex(client.id)
            assert resumed.user_data == b"again"
            await client.send(b"part 2")
            assert await peer.receive() == b"part 2"
            end_serial = await client.end_activity()
            assert end_serial == checkpoint + 1
            assert (await next_event(peer, ev.ActivityEndIndication)).serial == end_serial
            await client.release()

    run(main())


@pytest.mark.parametrize("then", ["resync", "interrupt"])
def test_end_activity_then_at_once_a_resync_or_an_interrupt(then: str) -> None:
    """end_activity(), then at once resync() or interrupt_activity(): the peer's AEA crosses
    the request, which takes precedence (X.225 7.24): the end raises SyncPurged, the request
    goes through, and the session goes on (both sides aborted for a protocol error)."""

    async def main() -> None:
        async with pair(ACTIVITIES, None) as (client, peer):
            await client.start_activity(b"act")
            await client.send(b"in it")
            serial = await client.sync(major=True)
            end = asyncio.ensure_future(client.end_activity())
            await asyncio.sleep(0)  # (the AE is out)
            assert not end.done()
            if then == "resync":
                assert await asyncio.wait_for(client.resync(), 10) == serial + 1
            else:
                await asyncio.wait_for(client.interrupt_activity(), 10)
            with pytest.raises(sessionlayer.SyncPurged):
                await asyncio.wait_for(end, 10)
            assert await peer.receive() == b"in it"
            await skip_to(peer, ev.ActivityEndIndication)
            kind = ev.ResyncIndication if then == "resync" else ev.ActivityInterruptIndication
            await skip_to(peer, kind)
            assert peer.machine.activity_in_progress == (then == "resync")
            if then == "resync":
                await client.send(b"again")
                assert await asyncio.wait_for(peer.receive(), 10) == b"again"
                assert await asyncio.wait_for(client.end_activity(), 10) == serial + 1
            assert not client.machine.activity_in_progress
            await client.release()

    run(main())


def test_activity_discard_on_error_and_by_request(tls: Any) -> None:
    async def main() -> None:
        async with pair(ACTIVITIES, tls) as (client, peer):
            with pytest.raises(KeyError):
                async with client.activity(b"doomed"):
                    await client.send(b"half done")
                    raise KeyError("application failure")
            await next_event(peer, ev.ActivityStartIndication)
            assert await peer.receive() == b"half done"
            await next_event(peer, ev.ActivityDiscardIndication)
            assert not client.machine.activity_in_progress
            async with client.activity(b"expl"):
                await client.discard_activity(ExceptionReason.SEQUENCE_ERROR, b"no")
            await next_event(peer, ev.ActivityStartIndication)
            got = await next_event(peer, ev.ActivityDiscardIndication)
            assert (got.reason, got.user_data) == (ExceptionReason.SEQUENCE_ERROR, b"no")
            await client.release()

    run(main())


def test_activity_started_by_the_responder(tls: Any) -> None:
    async def main() -> None:
        async with pair(ACTIVITIES, tls) as (client, peer):
            async with peer.activity(b"theirs"):  # the tokens are fetched first
                await peer.send(b"from the responder")
            got = await skip_to(client, ev.ActivityStartIndication)
            assert got.activity_id == b"theirs"
            assert await client.receive() == b"from the responder"
            await next_event(client, ev.ActivityEndIndication)
            await client.release()  # the tokens come back for the release

    run(main())


# ---------------------------------------------------------------- exceptions


def test_user_exception_report_and_recovery(tls: Any) -> None:
    async def main() -> None:
        async with pair(FU.HALF_DUPLEX | FU.EXCEPTIONS, tls) as (client, peer):
            assert not peer.tokens & Token.DATA
            peer.exception_report(ExceptionReason.RECEIVING_ABILITY_JEOPARDIZED, b"slow down")
            got = await next_event(client, ev.UserExceptionReportIndication)
            assert got.reason == ExceptionReason.RECEIVING_ABILITY_JEOPARDIZED
            assert got.user_data == b"slow down"
            client.give_tokens(Token.DATA)  # one of the recoveries X.215 allows
            assert (await next_event(peer, ev.TokenGiveIndication)).tokens == Token.DATA
            await peer.send(b"recovered")
            assert await client.receive() == b"recovered"
            await client.release()

    run(main())


# ---------------------------------------------------------------- release and abort


def test_release_refused_under_negotiated_release(tls: Any) -> None:
    async def main() -> None:
        units = FU.DUPLEX | FU.NEGOTIATED_RELEASE
        async with pair(units, tls) as (client, peer):
            assert client.tokens == Token.RELEASE
            answers = [False, True]
            peer.on_release = lambda event: answers.pop(0)
            with pytest.raises(ReleaseRefused):
                await client.release(b"done?")
            got = await next_event(peer, ev.ReleaseIndication)
            assert got.user_data == b"done?"
            assert not client.closed and not peer.closed
            await client.send(b"still open")
            assert await peer.receive() == b"still open"
            await client.release()
            assert client.state == "released"
            await peer.wait_closed()
            assert peer.state == "released"

    run(main())


def test_release_refused_while_the_peer_asks_for_the_release_token(tls: Any) -> None:
    """Both ask to release: our FN crosses the peer's PLEASE TOKENS; the peer refuses our
    FN (NF), then gets the release token it asked for and releases itself."""

    async def main() -> None:
        async with pair(FU.DUPLEX | FU.NEGOTIATED_RELEASE, tls) as (client, peer):
            peer.on_release = lambda event: False
            ours, theirs = await asyncio.gather(
                client.release(), peer.release(), return_exceptions=True
            )
            assert isinstance(ours, ReleaseRefused), ours
            assert theirs is None
            assert client.state == "released" == peer.state

    run(main())


def test_release_by_the_responder_fetches_the_release_token(tls: Any) -> None:
    async def main() -> None:
        async with pair(FU.DUPLEX | FU.NEGOTIATED_RELEASE, tls) as (client, peer):
            assert peer.tokens == 0
            await peer.release()
            assert peer.state == "released"
            with pytest.raises(sessionlayer.SessionClosed):
                await client.receive()

    run(main())


def test_abort_with_user_data_reaches_the_peer(tls: Any) -> None:
    async def main() -> None:
        async with pair(DUPLEX, tls) as (client, peer):
            client.abort(b"bye now")
            with pytest.raises(SessionAborted) as info:
                await peer.receive()
            assert info.value.by_peer
            assert info.value.user_data == b"bye now"
            assert info.value.reason == AbortReason.USER_ABORT
            assert [e async for e in peer.events()] == []  # the event stream ended
            assert peer.state == "aborted"

    run(main())


@pytest.mark.parametrize(
    "units",
    [FU.DUPLEX, DUPLEX, HALF, FU.DUPLEX | FU.NEGOTIATED_RELEASE],
    ids=["no-tokens", "duplex-sync", "half-duplex", "negotiated"],
)
def test_both_sides_release_at_once(tls: Any, units: FU) -> None:
    """Without tokens this is X.225's release collision; with tokens, the side without
    them asks for them (PT) while the other side's FN is already on its way."""

    async def main() -> None:
        async with pair(units, tls) as (client, peer):
            results = await asyncio.gather(client.release(b"c"), peer.release(b"p"))
            assert results == [None, None]  # DN user data: none
            assert client.state == "released" and peer.state == "released"
            await client.wait_closed()
            await peer.wait_closed()

    run(main())


def test_resync_with_no_arguments_restarts_from_the_last_checkpoint(tls: Any) -> None:
    """Issue 7: ``await session.resync()`` goes back to the last confirmed major sync point
    (V(R)), without the user reading it from the machine."""

    async def main() -> None:
        async with pair(HALF, tls) as (client, peer):
            checkpoint = await client.sync(major=True, user_data=b"cp")
            await next_event(peer, ev.MajorSyncIndication)
            await client.sync()
            await client.sync()
            await next_event(peer, ev.MinorSyncIndication)
            await next_event(peer, ev.MinorSyncIndication)
            serial = await client.resync()
            got = await next_event(peer, ev.ResyncIndication)
            assert (got.type, got.serial) == (ResyncType.RESTART, serial)
            assert serial == checkpoint + 1 == client.machine.vm == peer.machine.vm

    run(main())


def test_release_answered_with_user_data(tls: Any) -> None:
    """``on_release`` returning bytes: the DN carries them, ``release()`` returns them."""

    async def main() -> None:
        async with pair(FU.DUPLEX, tls) as (client, peer):
            seen: list[bytes | None] = []

            def answer(event: ev.ReleaseIndication) -> bytes:
                seen.append(event.user_data)
                return b"RLRE"

            peer.on_release = answer
            assert await client.release(user_data=b"RLRQ") == b"RLRE"
            assert seen == [b"RLRQ"]

    run(main())
