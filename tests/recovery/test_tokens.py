"""Resume tokens: forged, replayed, expired, unknown and wrong-identity tokens are refused,
each with its reason, over the wire (RF reason 2, the rejection's code) and as
ResumeRefused on the client."""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
from pathlib import Path

import pytest
import trustme
from tests.faults.proxy import FaultProxy
from tests.redisserver import running_redis

import sessionlayer
from sessionlayer import Options
from sessionlayer.agent import Rejection, Welcome
from sessionlayer.errors import ResumeRefused
from sessionlayer.machine import events as ev
from sessionlayer.recovery import ANONYMOUS, Resumed, identity_of, issue, parse, verify
from sessionlayer.stores import MemoryStore, RedisStore, SessionRecord, SQLiteStore

from .helpers import FAST, LIMIT, cut, next_of, raw_resume, run, token_of

SECRET = b"k" * 32
SID = "0123456789abcdef" * 2


# ---------------------------------------------------------------- the token itself


def test_a_token_verifies_for_its_session_generation_and_identity() -> None:
    token = issue(SECRET, SID, 3, ANONYMOUS)
    assert parse(token) == (SID, 3)
    verify(SECRET, token, generation=3, identity=ANONYMOUS, presenter=ANONYMOUS)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"), "token_invalid"),  # forged MAC
        (lambda t: t.replace(".3.", ".4."), "token_invalid"),  # generation changed
        (lambda t: t[:40], "token_invalid"),  # cut short
        (lambda t: "x" * 200, "token_invalid"),
        (lambda t: "", "token_invalid"),
    ],
)
def test_a_changed_token_is_invalid(change, code) -> None:  # type: ignore[no-untyped-def]
    token = change(issue(SECRET, SID, 3, ANONYMOUS))
    with pytest.raises(ResumeRefused) as info:
        verify(SECRET, token, generation=3, identity=ANONYMOUS, presenter=ANONYMOUS)
    assert info.value.code == code


def test_an_older_generation_is_replayed_and_another_identity_is_refused() -> None:
    old = issue(SECRET, SID, 2, ANONYMOUS)
    with pytest.raises(ResumeRefused) as info:
        verify(SECRET, old, generation=3, identity=ANONYMOUS, presenter=ANONYMOUS)
    assert info.value.code == "token_replayed"
    alice = identity_of({"user": "alice", "password": "a"}, None)
    bob = identity_of({"user": "bob", "password": "b"}, None)
    token = issue(SECRET, SID, 0, alice)
    with pytest.raises(ResumeRefused) as info:
        verify(SECRET, token, generation=0, identity=alice, presenter=bob)
    assert info.value.code == "wrong_identity"
    with pytest.raises(ResumeRefused) as info:  # another server's secret
        verify(b"s" * 32, token, generation=0, identity=alice, presenter=alice)
    assert info.value.code == "token_invalid"


def test_identities_keep_no_secret_in_the_clear() -> None:
    ident = identity_of({"user": "alice", "password": "hunter2"}, None)
    assert "hunter2" not in ident and ident.startswith("cred:")
    assert identity_of(None, b"DER").startswith("cert:")
    assert identity_of(None, None) == ANONYMOUS


# ---------------------------------------------------------------- over the wire


async def _echo(session: sessionlayer.Session) -> None:
    async for data in session:
        await session.send(data)


def _code(answer: tuple[ev.Event, object]) -> str:
    event, rejection = answer
    assert isinstance(event, ev.RefuseConfirm), event
    assert isinstance(rejection, Rejection)
    assert rejection.code.startswith("resume:")
    return rejection.code.removeprefix("resume:")


def test_forged_replayed_unknown_and_storeless_tokens_are_refused_with_their_reasons() -> None:
    async def main() -> None:
        async with await sessionlayer.serve(_echo, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            first = token_of(client)
            cut(client)
            await next_of(client, sessionlayer.recovery.Resumed)
            assert token_of(client) != first  # rotated on every resume
            await client.send(b"heard")  # the client is heard on its new connection ...
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"heard"
            # ... so the old token again is refused, and the live session goes on untouched.
            assert _code(await raw_resume(server.port, first)) == "token_replayed"
            forged = token_of(client)[:-1] + ("0" if token_of(client)[-1] != "0" else "1")
            assert _code(await raw_resume(server.port, forged)) == "token_invalid"
            assert _code(await raw_resume(server.port, "nonsense")) == "token_invalid"
            other = issue(b"x" * 32, "f" * 32, 0, ANONYMOUS)  # no such session, no store
            assert _code(await raw_resume(server.port, other)) == "no_store"
            assert server.stats.resume_refused == {
                "token_replayed": 1, "token_invalid": 2, "no_store": 1,
            }  # fmt: skip
            await client.send(b"still here")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"still here"
            # The right token resumes, once.
            token = token_of(client)
            event, welcome = await raw_resume(server.port, token, recv=client.messages_in)
            assert isinstance(event, ev.ConnectConfirm) and isinstance(welcome, Welcome)
            assert welcome.resumed == "resumed" and welcome.token != token

    run(main())


def test_the_token_before_is_good_while_the_client_was_not_heard_since() -> None:
    """A resume whose accept (with the new token) was lost on the way: the client still
    has the token before, and tries again with it."""

    async def main() -> None:
        async with await sessionlayer.serve(_echo, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            first = token_of(client)
            # A resume by first whose answer the client never reads (a raw one) ...
            event, welcome = await raw_resume(server.port, first)
            assert isinstance(event, ev.ConnectConfirm)
            # ... then the real client, with the same token: still good, once.
            event, welcome = await raw_resume(server.port, first, recv=client.messages_in)
            assert isinstance(event, ev.ConnectConfirm), welcome
            client.abort()

    run(main())


def test_a_token_presented_by_another_identity_is_refused() -> None:
    users = {"alice": "a-pass", "bob": "b-pass"}

    async def main() -> None:
        auth = sessionlayer.check_passwords(users)
        async with await sessionlayer.serve(_echo, options=FAST, authenticate=auth) as server:
            client = await sessionlayer.connect(
                "127.0.0.1", server.port, options=FAST,
                credentials={"user": "alice", "password": "a-pass"},
            )  # fmt: skip
            token = token_of(client)
            answer = await raw_resume(server.port, token,
                                      credentials={"user": "bob", "password": "b-pass"})
            assert _code(answer) == "wrong_identity"
            # Bad credentials are refused before the token is looked at.
            event, rejection = await raw_resume(
                server.port, token, credentials={"user": "alice", "password": "wrong"})
            assert isinstance(event, ev.RefuseConfirm)
            # Alice herself resumes.
            event, _ = await raw_resume(
                server.port, token, recv=client.messages_in,
                credentials={"user": "alice", "password": "a-pass"},
            )  # fmt: skip
            assert isinstance(event, ev.ConnectConfirm), rejection

    run(main())


def test_an_expired_session_is_refused_and_gone_from_the_store() -> None:
    """A record whose node died while its client was away, past its deadline."""

    async def main() -> None:
        store = MemoryStore()
        async with await sessionlayer.serve(_echo, options=FAST, store=store) as server:
            secret = await store.secret()
            await store.put(SessionRecord(
                id=SID, generation=0, identity=ANONYMOUS, chosen={}, created=time.time() - 60,
                expires_at=time.time() - 1,
            ))  # fmt: skip
            token = issue(secret, SID, 0, ANONYMOUS)
            assert _code(await raw_resume(server.port, token)) == "expired"
            assert await store.get(SID) is None
            assert _code(await raw_resume(server.port, token)) == "unknown"

    run(main())


def test_a_session_whose_client_does_not_come_back_expires() -> None:
    async def main() -> None:
        ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                async for _ in session:
                    pass
            except sessionlayer.SessionAborted as exc:
                ended.set_result(exc)

        store = MemoryStore()
        opts = Options(resume_timeout=0.2)
        client_opts = Options(backoff=sessionlayer.recovery.Backoff(first=5.0, give_up=6.0))
        async with await sessionlayer.serve(handler, options=opts, store=store) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=client_opts)
            token = token_of(client)
            sid = client.id
            async with asyncio.timeout(LIMIT):
                while await store.get(sid) is None:  # (written after the AC)
                    await asyncio.sleep(0.01)
            cut(client)  # its first try comes after 5 s: too late
            exc = await asyncio.wait_for(ended, LIMIT)
            assert "did not resume" in str(exc)
            assert server.stats.expired == 1
            async with asyncio.timeout(LIMIT):
                while await store.get(sid) is not None:
                    await asyncio.sleep(0.01)
            # This server remembers why it ended (another would say "unknown": gone from
            # the store).
            answer = await raw_resume(server.port, token)
            assert _code(answer) == "expired" and "did not resume" in answer[1].message
            assert server.detached == [] and server.sessions == []
            client.abort()

    run(main())


def test_detached_sessions_expire_oldest_first_and_a_resumed_one_never() -> None:
    """One timer serves every detached session (each waits ``resume_timeout`` from its own
    loss): the first lost ends first, one lost later after it, and one that resumed in
    between lives on past both deadlines."""

    async def main() -> None:
        ended: list[str] = []
        both_ended = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                async for data in session:
                    await session.send(data)
            except sessionlayer.SessionAborted as exc:
                assert "did not resume" in str(exc)
                ended.append(session.id)
                if len(ended) == 2:
                    both_ended.set()

        away = Options(backoff=sessionlayer.recovery.Backoff(first=5.0, give_up=6.0))
        back = Options(backoff=sessionlayer.recovery.Backoff(first=0))
        opts = Options(resume_timeout=0.3)
        async with await sessionlayer.serve(handler, options=opts) as server:
            port = server.port
            first = await sessionlayer.connect("127.0.0.1", port, options=away)
            stays = await sessionlayer.connect("127.0.0.1", port, options=back)
            later = await sessionlayer.connect("127.0.0.1", port, options=away)

            async def detached(session: sessionlayer.Session) -> None:
                async with asyncio.timeout(LIMIT):
                    while session.id not in [d.id for d in server.detached]:
                        await asyncio.sleep(0.005)

            cut(first)
            await detached(first)
            resumed = asyncio.ensure_future(next_of(stays, Resumed))
            await asyncio.sleep(0)  # (the watcher waits on the events before the cut)
            cut(stays)
            await resumed
            cut(later)
            await detached(later)
            await asyncio.wait_for(both_ended.wait(), LIMIT)
            assert ended == [first.id, later.id]
            assert server.stats.expired == 2
            await stays.send(b"still here")
            assert await asyncio.wait_for(stays.receive(), LIMIT) == b"still here"
            assert [s.id for s in server.sessions] == [stays.id]
            for client in (first, stays, later):
                client.abort()

    run(main())


def test_the_client_gives_up_when_no_server_answers() -> None:
    async def main() -> None:
        opts = Options(backoff=sessionlayer.recovery.Backoff(first=0, cap=0.05, give_up=0.5))
        async with await sessionlayer.serve(_echo, options=FAST) as server:
            async with FaultProxy("127.0.0.1", server.port, seed=1) as proxy:
                client = await sessionlayer.connect("127.0.0.1", proxy.port, options=opts)
                proxy.refuse(True)  # every try is reset at once
                proxy.cut("reset")
                with pytest.raises(ResumeRefused) as info:
                    await asyncio.wait_for(client.receive(), LIMIT)
                assert info.value.code == "gave_up"
                assert "tries" in str(info.value)

    run(main())


def test_expired_sessions_are_swept_from_the_store(tmp_path: Path) -> None:
    """Records of sessions detached on a node that died are removed by any server's sweep
    (here SQLite; Redis also ages them out with a TTL of its own)."""

    async def main() -> None:
        store = SQLiteStore(tmp_path / "sessions.db")
        await store.put(SessionRecord(
            id=SID, generation=0, identity=ANONYMOUS, chosen={}, created=time.time(),
            expires_at=time.time() + 0.1,
        ))  # fmt: skip
        opts = Options(resume_timeout=0.2)
        async with await sessionlayer.serve(_echo, options=opts, store=store):
            async with asyncio.timeout(LIMIT):
                while await store.get(SID) is not None:
                    await asyncio.sleep(0.02)
        await store.close()

    run(main())


def test_a_store_that_is_down_refuses_the_resume_with_its_reason() -> None:
    with running_redis() as redis:

        async def main() -> None:
            store = RedisStore(redis.url, timeout=0.5)
            async with await sessionlayer.serve(_echo, options=FAST, store=store) as server:
                token = issue(await store.secret(), SID, 0, ANONYMOUS)
                redis.kill()
                answer = await asyncio.wait_for(raw_resume(server.port, token), LIMIT)
                assert _code(answer) == "store_unavailable"

        run(main())


def test_a_detached_session_can_be_listed_and_dropped() -> None:
    async def main() -> None:
        ended = asyncio.Event()

        async def handler(session: sessionlayer.Session) -> None:
            try:
                async for _ in session:
                    pass
            finally:
                ended.set()

        slow = Options(backoff=sessionlayer.recovery.Backoff(first=5.0, give_up=6.0))
        async with await sessionlayer.serve(handler, options=FAST) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=slow)
            cut(client)
            async with asyncio.timeout(LIMIT):
                while not server.detached:
                    await asyncio.sleep(0.01)
            [info] = server.detached
            assert info.id == client.id and info.state == "detached"
            assert [s.state for s in server.sessions] == ["detached"]
            token = token_of(client)
            assert server.drop(client.id)
            await asyncio.wait_for(ended.wait(), LIMIT)
            assert not server.drop(client.id)
            assert server.sessions == []
            # Its client, back late, is told why it is over ("ended"), not "unknown"; a
            # forged token for it learns nothing.
            answer = await asyncio.wait_for(raw_resume(server.port, token), LIMIT)
            assert _code(answer) == "ended", answer
            assert "is over: aborted by the local user" in answer[1].message  # type: ignore[union-attr]
            sid, gen = parse(token)
            forged = issue(b"another secret" * 3, sid, gen, ANONYMOUS)
            answer = await asyncio.wait_for(raw_resume(server.port, forged), LIMIT)
            assert _code(answer) == "token_invalid"
            client.abort()

    run(main())


def test_under_mutual_tls_the_token_is_bound_to_the_client_certificate() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    contexts = {}
    for name in ("alice.example", "bob.example"):
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        ca.issue_cert(name).configure_cert(ctx)
        contexts[name] = ctx

    async def main() -> None:
        async with await sessionlayer.serve(_echo, tls=server_ctx, options=FAST) as server:
            client = await sessionlayer.connect(
                "127.0.0.1", server.port, tls=contexts["alice.example"],
                server_hostname="localhost", options=FAST,
            )  # fmt: skip
            await client.send(b"one")
            assert await client.receive() == b"one"
            cut(client)  # resumed over a new TLS connection, same certificate
            await next_of(client, sessionlayer.recovery.Resumed)
            await client.send(b"two")
            assert await asyncio.wait_for(client.receive(), LIMIT) == b"two"
            answer = await raw_resume(server.port, token_of(client), tls=contexts["bob.example"])
            assert _code(answer) == "wrong_identity"
            event, _ = await raw_resume(server.port, token_of(client), recv=client.messages_in,
                                        tls=contexts["alice.example"])  # fmt: skip
            assert isinstance(event, ev.ConnectConfirm)
            client.abort()

    run(main())


def test_a_store_that_raises_what_it_should_not_is_logged_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store's bug (not StoreUnavailable) in a background write or in the sweep: logged
    with its traceback, the session and the sweep go on (``run`` fails on anything that
    reaches asyncio's exception handler, "Task exception was never retrieved" included)."""

    class Broken(MemoryStore):
        sweeps = 0
        swept = asyncio.Event()

        async def put(self, record: SessionRecord) -> None:
            raise RuntimeError("put is broken")

        async def expire(self, now: float) -> list[str]:
            Broken.sweeps += 1
            if Broken.sweeps >= 2:
                Broken.swept.set()
            raise RuntimeError("expire is broken")

    async def main() -> None:
        opts = Options(resume_timeout=0.2)
        async with await sessionlayer.serve(_echo, options=opts, store=Broken()) as server:
            client = await sessionlayer.connect("127.0.0.1", server.port, options=FAST)
            await client.send(b"still here")
            assert await client.receive() == b"still here"
            await asyncio.wait_for(Broken.swept.wait(), LIMIT)  # (the sweep goes on)
            client.abort()
        gc.collect()  # (a task's lost exception is reported when the task is collected)

    run(main())
    failed = [r.getMessage() for r in caplog.records if r.exc_info]
    assert any("put failed" in m for m in failed) and any("expire failed" in m for m in failed)


def test_a_try_under_way_at_the_give_up_time_ends_by_it() -> None:
    """A server that takes the connection and never answers: the try under way ends at the
    give-up time, not a handshake timeout later (it could end 20 s after give_up)."""

    async def main() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # (reads nothing, answers nothing, closes nothing)

        opts = Options(backoff=sessionlayer.recovery.Backoff(first=0, cap=0.05, give_up=1.0),
                       connect_timeout=30.0, handshake_timeout=30.0)  # fmt: skip
        quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
        async with quiet, await sessionlayer.serve(_echo, options=FAST) as server, \
                FaultProxy("127.0.0.1", server.port, seed=1) as proxy:  # fmt: skip
            client = await sessionlayer.connect(
                "127.0.0.1", proxy.port, options=opts,
                addresses=[("127.0.0.1", quiet.sockets[0].getsockname()[1])])  # fmt: skip
            proxy.refuse(True)  # (its tries are reset at once; the quiet one is tried next)
            proxy.cut("reset")
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ResumeRefused) as info:
                await asyncio.wait_for(client.receive(), LIMIT)
            assert info.value.code == "gave_up", info.value
            assert loop.time() - started < 1.0 + 5.0  # (not 30 s: the handshake's timeout)
            for writer in held:
                writer.close()

    run(main())
