"""Resumes from the store racing the node that held the session, and refusals of a resume
from the store (docs/recovery.md, "Several nodes", "Tokens", "Reasons").  Real stores
(memory, a SQLite file), real servers over TCP on loopback; a store wrapper (Watched)
holds chosen calls to force a race window."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sessionlayer
from sessionlayer.agent import Rejection, Welcome
from sessionlayer.errors import StoreUnavailable
from sessionlayer.machine import events as ev
from sessionlayer.recovery import ANONYMOUS, Checkpoint, Resumed, issue
from sessionlayer.stores import MemoryStore, SessionRecord, SessionStore, SQLiteStore

from .helpers import FAST, LIMIT, next_of, raw_resume, raw_resumed, run
from .test_secret_and_leases import Watched

SID = "0123456789abcdef" * 2


@pytest.fixture(params=["memory", "sqlite"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SessionStore]:
    if request.param == "memory":
        return MemoryStore
    return lambda: SQLiteStore(tmp_path / "sessions.db")


def _record(**changes: object) -> SessionRecord:
    fields: dict[str, object] = dict(
        id=SID, generation=0, identity=ANONYMOUS, chosen={}, created=time.time(),
        expires_at=time.time() + 60, checkpoint=Checkpoint(0, b"c1"), node="a",
        detached=True,
    )  # fmt: skip
    fields.update(changes)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def test_a_resume_goes_on_from_the_checkpoint_recorded_while_it_advanced(
    new_store: Callable[[], SessionStore],
) -> None:
    """Node a records checkpoint c2 (a conditional update at generation 0, as it does
    before confirming it) between node b's read of the record and its advance: b resumes
    the client from c2, the record it now holds, and says so (before: from c1, the record
    it read first, while the store said c2; a third node then restored the client to c2,
    which it had been told was dropped)."""

    async def main() -> None:
        store = new_store()
        restored: list[Checkpoint | None] = []

        async def handler(session: sessionlayer.Session) -> None:
            restored.append(session.restored)
            await session.wait_closed()

        watched = Watched(store)
        b = await sessionlayer.serve(handler, store=watched, node="b")
        try:
            await store.put(_record())
            token = issue(await store.secret(), SID, 0, ANONYMOUS)
            watched.hold("advance")
            answer = asyncio.ensure_future(raw_resume(b.port, token))
            async with asyncio.timeout(LIMIT):
                await watched.entered["advance"].wait()
            assert await store.update(SID, checkpoint=Checkpoint(1, b"c2"), if_generation=0,
                                      if_node="a")  # fmt: skip
            watched.release("advance")
            event, welcome = await answer
            assert isinstance(event, ev.ConnectConfirm) and isinstance(welcome, Welcome)
            assert welcome.checkpoint == (1, b"c2")
            record = await store.get(SID)
            assert record is not None and record.checkpoint == Checkpoint(1, b"c2")
            assert (record.generation, record.node) == (1, "b")
            assert restored == [Checkpoint(1, b"c2")]
        finally:
            watched.release_all()
            b.close()
            await b.wait_closed()
            await store.close()

    run(main())


def test_two_lost_accepts_in_a_row_on_two_nodes_leave_the_clients_token_good(
    new_store: Callable[[], SessionStore],
) -> None:
    """The client has T0; node b resumes the session from the store and its accept (T1) is
    lost, then node c takes T0 again and its accept (T2) is lost too: node d still takes
    T0, the token the client was last heard with (before: refused as token_replayed, the
    record taking only the token just before its own, and the session was lost)."""

    async def main() -> None:
        store = new_store()
        servers = [await sessionlayer.serve(_waits, store=store, node=n) for n in "bcd"]
        b, c, d = servers
        try:
            await store.put(_record())
            t0 = issue(await store.secret(), SID, 0, ANONYMOUS)
            for node, generation in ((b, 1), (c, 2)):
                async with raw_resumed(node.port, t0) as (event, welcome):
                    assert isinstance(event, ev.ConnectConfirm), (event, welcome)
                record = await store.get(SID)
                assert record is not None and (record.generation, record.oldest) == (
                    generation, 0)  # fmt: skip
            event, welcome = await raw_resume(d.port, t0)
            assert isinstance(event, ev.ConnectConfirm), (event, welcome)
            assert isinstance(welcome, Welcome) and welcome.resumed == "checkpoint"
            record = await store.get(SID)
            assert record is not None and (record.generation, record.node) == (3, "d")
            # Once d heard the client, T0 is refused from the store (on a node holding no
            # copy of the session's).
            await store.update(SID, heard_at=None, if_generation=3, if_node="d")
            e = await sessionlayer.serve(_waits, store=store, node="e")
            servers.append(e)
            _, rejection = await raw_resume(e.port, t0)
            assert isinstance(rejection, Rejection), rejection
            assert rejection.code == "resume:token_replayed"
        finally:
            for server in servers:
                server.close()
            for server in servers:
                await server.wait_closed()
            await store.close()

    run(main())


async def _waits(session: sessionlayer.Session) -> None:
    with contextlib.suppress(sessionlayer.SessionLayerError):
        await session.wait_closed()


class _Down:
    """A real store whose ``get`` fails (StoreUnavailable) while ``down``; ``failed`` is
    set once it failed ``times`` times."""

    def __init__(self, store: SessionStore, times: int) -> None:
        self.store = store
        self.name = store.name
        self.down = True
        self.failures = 0
        self.times = times
        self.failed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def get(self, session_id: str) -> SessionRecord | None:
        if self.down:
            self.failures += 1
            if self.failures >= self.times:
                self.failed.set()
            raise StoreUnavailable(self.name, "down for the test")
        return await self.store.get(session_id)


def test_a_store_that_did_not_answer_for_a_while_does_not_end_the_session() -> None:
    """Node b's store does not answer the first resume tries (b refuses them as
    store_unavailable); the client keeps trying, and resumes once it is back (before: the
    first such refusal was final, and the session ended with give_up far off)."""

    async def main() -> None:
        store = MemoryStore()
        down = _Down(store, times=3)
        watched = Watched(store)
        a = await sessionlayer.serve(_echo, store=watched, node="a")
        b = await sessionlayer.serve(_echo, store=down, node="b")
        try:
            client = await sessionlayer.connect("127.0.0.1", a.port, options=FAST,
                                                addresses=[("127.0.0.1", b.port)])  # fmt: skip
            await client.send(b"one")
            assert await client.receive() == b"one"

            async def written() -> bool:  # (a's write, in the background)
                return await store.get(client.id) is not None

            await watched.until(written)
            a.close(detach=True)
            await a.wait_closed()
            async with asyncio.timeout(LIMIT):
                await down.failed.wait()
            down.down = False
            resumed = await next_of(client, Resumed)
            assert resumed.outcome == "checkpoint"
            assert b.stats.resume_refused["store_unavailable"] >= 3
            with pytest.raises(sessionlayer.CheckpointRestored):
                await client.send(b"two")
            await client.send(b"two")
            with pytest.raises(sessionlayer.CheckpointRestored):
                await client.receive()
            assert await client.receive() == b"two"
            await client.release()
        finally:
            a.close()
            b.close()
            await a.wait_closed()
            await b.wait_closed()

    run(main())


async def _echo(session: sessionlayer.Session) -> None:
    with contextlib.suppress(sessionlayer.SessionLayerError):
        async for data in session:
            await session.send(data)


class _Broken:
    """A real store whose ``get`` has a bug (raises RuntimeError)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.name = store.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def get(self, session_id: str) -> SessionRecord | None:
        raise RuntimeError("a bug of the store's")


def test_a_corrupt_record_or_a_failure_in_a_resume_is_not_an_authentication_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record nested too deep (SQLite): the resume is refused as corrupt (final), saying
    the record is corrupt; a store's bug: refused once and for all, logged once with its
    cause (before: both were logged as "authenticate() failed" with a traceback and
    refused as "authentication error", which the client took for one failed try, again
    and again until it gave up; then the corrupt record was store_unavailable, tried again
    until give_up too: tests/recovery/test_corrupt_record.py).  authenticate() raising is
    still an authentication error."""
    path = tmp_path / "sessions.db"

    async def main() -> None:
        store = SQLiteStore(path)
        await store.put(_record())
        token = issue(await store.secret(), SID, 0, ANONYMOUS)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("UPDATE sessions SET record = ?", ("[" * 100_000 + "]" * 100_000,))
        db.close()

        def authenticate(request: sessionlayer.ConnectRequest) -> bool:
            if (request.credentials or {}).get("boom"):
                raise KeyError("the callback's bug")
            return True

        servers = [
            await sessionlayer.serve(_waits, store=store, node="b", authenticate=authenticate),
            await sessionlayer.serve(_waits, store=_Broken(store), node="c"),
        ]
        b, c = servers
        try:
            _, rejection = await raw_resume(b.port, token)
            assert isinstance(rejection, Rejection), rejection
            assert rejection.code == "resume:corrupt"
            assert f"record {SID} is corrupt" in rejection.message
            assert b.stats.resume_refused == {"corrupt": 1}
            _, rejection = await raw_resume(c.port, token)
            assert isinstance(rejection, Rejection), rejection
            assert rejection.code == "resume:refused"
            assert "server error" in rejection.message
            assert c.stats.resume_refused == {"refused": 1}
            _, rejection = await raw_resume(b.port, token, credentials={"boom": "1"})
            assert isinstance(rejection, Rejection), rejection
            assert rejection.message == "authentication error"
            assert not rejection.code.startswith("resume:")
        finally:
            for server in servers:
                server.close()
            for server in servers:
                await server.wait_closed()
            await store.close()

    with caplog.at_level(logging.WARNING):
        run(main())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().startswith("authenticate() failed") for r in errors] == [
        False, True]  # fmt: skip
    assert "RuntimeError: a bug of the store's" in errors[0].getMessage()
