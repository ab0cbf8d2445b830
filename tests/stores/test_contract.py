"""The SessionStore contract, run against every store: memory, SQLite, a real Redis."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from tests.stores.helpers import Backend, make_record, new_id, run

from sessionlayer.stores import KEEP, Checkpoint, SessionStore, StoreUnavailable


async def _closing(*stores: SessionStore) -> None:
    for store in stores:
        await store.close()


def test_put_get_round_trip_every_field(backend: Backend) -> None:
    now = time.time()
    records = [
        make_record(),
        make_record(checkpoint=None, node=None, peer=None, expires_at=None, chosen={}),
        make_record(checkpoint=Checkpoint(serial=0, user_data=None), identity="anon"),
        make_record(checkpoint=Checkpoint(serial=1, user_data=b""), generation=41),
        make_record(checkpoint=Checkpoint(serial=2, user_data=bytes(range(256)) * 4)),
        make_record(created=now - 0.1, expires_at=now + 1e-6, identity="cert:" + "0f" * 32),
    ]

    async def main() -> None:
        store = backend.open()
        try:
            for record in records:
                await store.put(record)
            for record in records:
                got = await store.get(record.id)
                assert got == record
                assert got is not None and type(got.expires_at) is type(record.expires_at)
            assert await store.get(new_id()) is None
            # Reopened (another node, or after a restart): the same records.
            other = backend.open()
            assert [await other.get(r.id) for r in records] == records
            await other.close()
        finally:
            await store.close()

    run(main())


def test_put_replaces_and_does_not_share_the_dict(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            detached = make_record()
            await store.put(detached)
            attached = replace(detached, expires_at=None, node="node-b", chosen={"x": "y"})
            await store.put(attached)
            assert await store.get(detached.id) == attached
            # Attached now: expiring at its old deadline leaves it.
            assert await store.expire(detached.expires_at or 0.0) == []
            assert await store.get(detached.id) == attached
            got = await store.get(detached.id)
            assert got is not None
            got.chosen["x"] = "changed"  # a caller's copy, not the store's
            assert await store.get(detached.id) == attached
        finally:
            await store.close()

    run(main())


def test_advance_is_a_compare_and_set(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            record = make_record(generation=3)
            await store.put(record)
            won = await store.advance(record.id, 3, node="node-b", expires_at=None)
            # (A resume: the token before is taken too, until the node clears it.)
            expected = replace(record, generation=4, node="node-b", expires_at=None,
                               heard_at=3)  # fmt: skip
            assert won == expected
            assert await store.get(record.id) == expected
            # The same token again (a replay, or the loser of a race): nothing changes.
            assert await store.advance(record.id, 3, node="node-c", expires_at=None) is None
            assert await store.advance(record.id, 5, node="node-c", expires_at=None) is None
            assert await store.get(record.id) == expected
            # Detach again with a deadline, then the next generation wins once more.
            deadline = time.time() + 60.5
            again = await store.advance(record.id, 4, node=None, expires_at=deadline)
            assert again == replace(expected, generation=5, node=None, expires_at=deadline)
            assert await store.advance(new_id(), 0, node="x", expires_at=None) is None
        finally:
            await store.close()

    run(main())


def test_resumes_whose_client_was_not_heard_keep_the_oldest_token_taken(
    backend: Backend,
) -> None:
    """Two resumes in a row whose client was never heard (both accepts lost, on two
    nodes): the second keeps ``heard_at`` where the first set it, so the token the client
    still has is taken by a third node (before: each advance said only "the token before",
    and the client's token was refused as replayed)."""

    async def main() -> None:
        store = backend.open()
        try:
            record = make_record(generation=0)
            await store.put(record)
            first = await store.advance(record.id, 0, node="b", expires_at=None)
            assert first is not None and (first.generation, first.heard_at) == (1, 0)
            second = await store.advance(record.id, 1, node="c", expires_at=None)
            assert second is not None and (second.generation, second.heard_at) == (2, 0)
            assert second.oldest == 0 and await store.get(record.id) == second
            # The CAS is still on the generation: a second presenter of one token loses.
            assert await store.advance(record.id, 1, node="d", expires_at=None) is None
            assert await store.update(record.id, heard_at=None, if_generation=2, if_node="c")
            third = await store.advance(record.id, 2, node="d", expires_at=None)
            assert third is not None and (third.generation, third.heard_at) == (3, 2)
        finally:
            await store.close()

    run(main())


def test_the_token_before_is_taken_from_a_resume_until_its_node_clears_it(
    backend: Backend,
) -> None:
    """``advance`` sets ``heard_at`` (the generation it advanced from); the node holding the
    record clears it with a conditional update (a stale node's, or one at another
    generation, changes nothing); a whole write keeps what it is given; the next resume
    sets it again."""

    async def main() -> None:
        store = backend.open()
        try:
            record = make_record(generation=2, heard_at=1)
            await store.put(record)
            assert await store.get(record.id) == record  # (round trip, set)
            assert await store.update(record.id, heard_at=None, if_generation=2,
                                      if_node="node-a")  # fmt: skip
            cleared = replace(record, heard_at=None)
            assert await store.get(record.id) == cleared
            resumed = await store.advance(record.id, 2, node="node-b", expires_at=None)
            assert resumed == replace(cleared, generation=3, node="node-b", expires_at=None,
                                      heard_at=2)  # fmt: skip
            # Not the holder, or not at its generation: nothing changes.
            assert not await store.update(record.id, heard_at=None, if_generation=3,
                                          if_node="node-a")  # fmt: skip
            assert not await store.update(record.id, heard_at=None, if_generation=2,
                                          if_node="node-b")  # fmt: skip
            assert await store.get(record.id) == resumed
            # The other fields are kept, and it is kept by the others' updates.
            assert await store.update(record.id, detached=True, if_node="node-b")
            assert await store.get(record.id) == replace(resumed, detached=True)
            assert await store.update(record.id, heard_at=None, if_generation=3,
                                      if_node="node-b")  # fmt: skip
            assert await store.get(record.id) == replace(resumed, detached=True,
                                                         heard_at=None)  # fmt: skip
            # Another node (the same data) sees it.
            other = backend.open()
            got = await other.get(record.id)
            await other.close()
            assert got is not None and not got.previous_ok
        finally:
            await store.close()

    run(main())


def test_two_nodes_racing_for_one_session_exactly_one_wins(backend: Backend) -> None:
    async def main() -> None:
        first, second = backend.open(), backend.open()
        try:
            records = [make_record() for _ in range(20)]
            for record in records:
                await first.put(record)
            for record in records:
                results = await asyncio.gather(
                    first.advance(record.id, 0, node="node-a", expires_at=None),
                    second.advance(record.id, 0, node="node-b", expires_at=None),
                )
                winners = [r for r in results if r is not None]
                assert len(winners) == 1, results
                stored = await second.get(record.id)
                assert stored == winners[0]
                assert stored.generation == 1
        finally:
            await _closing(first, second)

    run(main())


def test_update_changes_only_what_is_given(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            record = make_record()
            await store.put(record)
            assert await store.update(record.id) is True  # everything KEEP
            assert await store.get(record.id) == record

            point = Checkpoint(serial=9, user_data=b"\x01\x02")
            assert await store.update(record.id, checkpoint=point)
            record = replace(record, checkpoint=point)
            assert await store.get(record.id) == record

            assert await store.update(record.id, expires_at=None, node="node-z")
            record = replace(record, expires_at=None, node="node-z")
            assert await store.get(record.id) == record

            deadline = time.time() + 12.25
            assert await store.update(
                record.id, expires_at=deadline, checkpoint=None, node=None
            )
            record = replace(record, expires_at=deadline, checkpoint=None, node=None)
            assert await store.get(record.id) == record

            assert await store.update(record.id, node=KEEP, checkpoint=KEEP, expires_at=KEEP)
            assert await store.get(record.id) == record
            assert await store.update(new_id(), node="x") is False
            assert await store.get(record.id) == record
        finally:
            await store.close()

    run(main())


def test_delete(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            keep, gone = make_record(), make_record()
            await store.put(keep)
            await store.put(gone)
            assert await store.delete(gone.id) is True
            assert await store.delete(gone.id) is False
            assert await store.get(gone.id) is None
            assert await store.get(keep.id) == keep
            assert await store.update(gone.id, node="x") is False
            assert await store.advance(gone.id, 0, node="x", expires_at=None) is None
            # A deleted detached session is not reported by expire.
            assert await store.expire(time.time() + 10_000) == [keep.id]
        finally:
            await store.close()

    run(main())


def test_list_oldest_first(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            assert await store.list() == []
            now = time.time()
            newest = make_record(created=now)
            oldest = make_record(created=now - 100)
            twins = sorted([make_record(created=now - 50), make_record(created=now - 50)],
                           key=lambda r: r.id)  # fmt: skip
            for record in (newest, twins[1], oldest, twins[0]):
                await store.put(record)
            assert await store.list() == [oldest, *twins, newest]
            await store.delete(twins[0].id)
            assert await store.list() == [oldest, twins[1], newest]
        finally:
            await store.close()

    run(main())


def test_expire_removes_exactly_the_detached_past_their_deadline(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            now = time.time()
            attached = make_record(expires_at=None)
            overdue = make_record(expires_at=now - 5)
            due_now = make_record(expires_at=now)  # expires_at <= now: gone
            later = make_record(expires_at=now + 100)
            resumed = make_record(expires_at=now - 1)
            for record in (attached, overdue, due_now, later, resumed):
                await store.put(record)
            # Resumed before the sweep: attached again, so it stays.
            assert await store.advance(resumed.id, 0, node="node-b", expires_at=None)

            assert sorted(await store.expire(now)) == sorted([overdue.id, due_now.id])
            left = {r.id for r in await store.list()}
            assert left == {attached.id, later.id, resumed.id}
            assert await store.expire(now) == []
            assert await store.get(overdue.id) is None

            # update() detaches and attaches as well.
            assert await store.update(attached.id, expires_at=now - 1)
            assert await store.update(later.id, expires_at=None)
            assert await store.expire(now + 1000) == [attached.id]
            assert {r.id for r in await store.list()} == {later.id, resumed.id}
        finally:
            await store.close()

    run(main())


def test_secret_is_32_octets_and_shared(backend: Backend) -> None:
    async def main() -> None:
        store, node_b = backend.open(), backend.open()
        try:
            secret = await store.secret()
            assert isinstance(secret, bytes) and len(secret) == 32
            assert await store.secret() == secret
            assert await node_b.secret() == secret  # every node signs alike
        finally:
            await _closing(store, node_b)
        if backend.kind == "memory":
            return  # a MemoryStore's secret lives and dies with the instance
        reopened = backend.open()  # after a restart: the same file, the same Redis
        try:
            assert await reopened.secret() == secret
        finally:
            await reopened.close()

    run(main())


def test_a_closed_store_raises_store_unavailable(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        record = make_record()
        await store.put(record)
        await store.close()
        await store.close()  # twice: harmless
        calls = [
            lambda: store.secret(),
            lambda: store.put(record),
            lambda: store.get(record.id),
            lambda: store.advance(record.id, 0, node=None, expires_at=None),
            lambda: store.update(record.id, node=None),
            lambda: store.delete(record.id),
            lambda: store.list(),
            lambda: store.expire(time.time()),
            lambda: store.delete(record.id, if_generation=0, if_node="node-a"),
            lambda: store.renew("node-a", [record.id], time.time()),
            lambda: store.renew("node-a", [], time.time()),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as raised:
                await call()
            assert raised.value.store == store.name
            assert store.name in str(raised.value)

    run(main())


def test_names(backend: Backend) -> None:
    async def main() -> None:
        store = backend.open()
        try:
            prefix = {"memory": "memory", "sqlite": "sqlite:/", "redis": "redis://127.0.0.1:"}
            assert store.name.startswith(prefix[backend.kind])
        finally:
            await store.close()

    run(main())


def test_conditional_update_and_delete_touch_only_the_record_still_held(
    backend: Backend,
) -> None:
    """A node changes or removes a record only while it is still the node's, at the
    generation it knows: another node that resumed the session since keeps it."""

    async def main() -> None:
        node_a, node_b = backend.open(), backend.open()
        try:
            record = make_record(generation=2, node="node-a", expires_at=None)
            await node_a.put(record)
            point = Checkpoint(serial=3, user_data=b"cp")
            assert await node_a.update(record.id, checkpoint=point, if_generation=2,
                                       if_node="node-a")  # fmt: skip
            record = replace(record, checkpoint=point)
            assert await node_a.get(record.id) == record
            # Node B resumes it: generation 3, held by B.
            moved = await node_b.advance(record.id, 2, node="node-b", expires_at=None)
            assert moved is not None
            # Node A's stale copy: neither its update nor its delete touches B's record.
            later = Checkpoint(serial=4, user_data=None)
            assert not await node_a.update(record.id, checkpoint=later, expires_at=1.0,
                                           if_generation=2, if_node="node-a")  # fmt: skip
            assert not await node_a.update(record.id, checkpoint=later, if_generation=3,
                                           if_node="node-a")  # fmt: skip
            assert not await node_a.update(record.id, checkpoint=later, if_generation=2)
            assert not await node_a.delete(record.id, if_generation=2, if_node="node-a")
            assert not await node_a.delete(record.id, if_generation=3, if_node="node-a")
            assert not await node_a.delete(record.id, if_node="node-a")
            assert await node_a.get(record.id) == moved
            assert await node_a.expire(time.time() + 10_000) == []
            # Node B's own, at its generation, do.
            assert await node_b.update(record.id, checkpoint=later, if_generation=3,
                                       if_node="node-b")  # fmt: skip
            assert await node_b.get(record.id) == replace(moved, checkpoint=later)
            assert await node_b.delete(record.id, if_generation=3, if_node="node-b")
            assert await node_b.get(record.id) is None
            assert not await node_b.delete(record.id, if_generation=3, if_node="node-b")
            assert not await node_b.update(record.id, node="x", if_node="node-b")
        finally:
            await _closing(node_a, node_b)

    run(main())


def test_put_unless_taken_writes_whole_unless_newer_or_held_by_another_node_at_its_generation(
    backend: Backend,
) -> None:
    """A node writing again a record it holds: absent, at an older generation (whoever
    holds it), or at its generation and its own (or no node's), it is written whole, as put
    writes it; at a newer generation, or at the same one and another node's, it stays as it
    is and is returned."""

    async def main() -> None:
        node_a, node_b = backend.open(), backend.open()
        try:
            # Absent: written (its deadline too: expire finds it).
            record = make_record(generation=2, node="node-a", detached=True)
            assert await node_a.put_unless_taken(record) is None
            assert await node_b.get(record.id) == record
            # Its own, at an older or the same generation, or no node's: written whole.
            point = Checkpoint(serial=9, user_data=b"again")
            attached = replace(record, generation=3, expires_at=None, checkpoint=point,
                               detached=False, chosen={"z": "1"})  # fmt: skip
            assert await node_a.put_unless_taken(attached) is None
            assert await node_b.get(record.id) == attached
            assert await node_b.expire((record.expires_at or 0.0) + 1) == []  # no deadline
            leased = replace(attached, expires_at=time.time() + 50.5, peer=None)
            assert await node_a.put_unless_taken(leased) is None
            assert await node_b.get(record.id) == leased
            await node_b.put(replace(leased, node=None))
            assert await node_a.put_unless_taken(leased) is None
            assert await node_b.get(record.id) == leased
            # Node B resumes it: generation 4, held by B.  Node A's copy (generation 3, its
            # own or no node's), and one at B's generation held by A, leave B's record.
            moved = await node_b.advance(record.id, 3, node="node-b", expires_at=None)
            assert moved is not None
            stale = replace(leased, checkpoint=None, expires_at=1.0)
            for write in (stale, replace(stale, generation=4), replace(stale, node=None)):
                assert await node_a.put_unless_taken(write) == moved
                assert await node_a.get(record.id) == moved
            # B's own write: at its generation, written; then A's at 3 with no node, and
            # B's at 3, are older than B's 4.
            newer = replace(moved, expires_at=time.time() + 100.25)
            assert await node_b.put_unless_taken(newer) is None
            for write in (replace(stale, node=None), replace(moved, generation=3, heard_at=None)):
                assert await node_a.put_unless_taken(write) == newer
            assert await node_a.get(record.id) == newer
            # A stale copy written first (the record swept: A's at 3) gives way to the node
            # that resumed the session (B's at 4): an older generation never bars a newer.
            await node_a.delete(record.id)
            assert await node_a.put_unless_taken(stale) is None
            assert await node_b.put_unless_taken(newer) is None
            assert await node_a.get(record.id) == newer
            assert await node_a.expire(newer.expires_at or 0.0) == [record.id]  # (B's kept)
        finally:
            await _closing(node_a, node_b)

    run(main())


def test_renew_sets_the_deadline_of_the_records_the_node_holds(backend: Backend) -> None:
    async def main() -> None:
        node_a, node_b = backend.open(), backend.open()
        try:
            now = time.time()
            mine = [make_record(node="node-a", expires_at=now + 1) for _ in range(3)]
            theirs = make_record(node="node-b", expires_at=now + 1)
            for record in (*mine, theirs):
                await node_a.put(record)
            absent = new_id()
            lease = now + 500.25
            ids = [mine[0].id, theirs.id, absent, mine[1].id, mine[2].id]
            assert sorted(await node_a.renew("node-a", ids, lease)) == sorted(
                r.id for r in mine
            )
            for record in mine:  # everything else as it was
                assert await node_b.get(record.id) == replace(record, expires_at=lease)
            assert await node_b.get(theirs.id) == theirs
            assert await node_b.get(absent) is None
            # Past the lease (the node died and renewed no more): expire removes them.
            assert await node_b.expire(now + 2) == [theirs.id]
            assert sorted(await node_b.expire(lease)) == sorted(r.id for r in mine)
            assert await node_b.list() == []
            assert await node_a.renew("node-a", [r.id for r in mine], lease + 1) == []
            assert await node_a.renew("node-a", [], lease) == []
        finally:
            await _closing(node_a, node_b)

    run(main())
