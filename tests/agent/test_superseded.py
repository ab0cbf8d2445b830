"""A confirmed minor sync point of ours that the peer's major sync point or activity end
crosses: the peer sent its MAP (AE) before it answered our MIP, has no S-SYNC-MINOR
response while its point waits, and its point settles ours (X.225 Table A-4: V(A) = V(M);
with symmetric synchronize [64] once answered).  The MIA never comes: the agent says so at
once (``MinorSyncSuperseded``, just before the peer's indication), and recovery counts the
point as answered on both sides."""

from __future__ import annotations

from tests.agent.test_agent import AgentPair, tsdus

from sessionlayer import FunctionalUnit as FU
from sessionlayer.agent import Options
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Journal
from sessionlayer.recovery.journal import MINOR
from sessionlayer.spdu import decode_tsdu
from sessionlayer.spdu.codes import Token, Version
from sessionlayer.spdu.types import MinorSyncAck

OPTS = Options(keepalive_interval=None, idle_timeout=None)
SS = FU.DUPLEX | FU.SYMMETRIC_SYNC | FU.MAJOR_SYNC | FU.RESYNC
ACTIVITIES = FU.DUPLEX | FU.SYMMETRIC_SYNC | FU.MAJOR_SYNC | FU.ACTIVITY | FU.RESYNC
HALF = FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC


def symmetric(units: FU = SS) -> AgentPair:
    """An open version-2 pair whose server holds the major/activity token."""
    pair = AgentPair(units, OPTS, versions=Version.V2)
    pair.open()
    if units & FU.ACTIVITY:
        pair.client.machine.activity_start(b"a1")
    pair.client.machine.give_tokens(Token.MAJOR_ACTIVITY)
    pair.pump()
    pair.events["client"].clear()
    pair.events["server"].clear()
    return pair


def mias_from(pair: AgentPair, side: str, since: int) -> list[MinorSyncAck]:
    return [s for who, data in pair.wire[since:] if who == side
            for t in tsdus(data) for s in decode_tsdu(t)
            if isinstance(s, MinorSyncAck)]  # fmt: skip


def test_a_major_sync_point_that_crossed_our_minor_one_supersedes_it() -> None:
    pair = symmetric()
    client, server = pair.client, pair.server
    minor = client.machine.minor_sync(confirm=True, user_data=b"mine")
    major = server.machine.major_sync(b"checkpoint")
    sent = len(pair.wire)
    pair.pump()  # each point reaches the other side after its own went out
    assert pair.events["client"] == [ev.MinorSyncSuperseded(minor, major),
                                     ev.MajorSyncIndication(major, b"checkpoint")]  # fmt: skip
    assert pair.kinds("server") == ["MinorSyncIndication", "MajorSyncConfirm"]
    assert not mias_from(pair, "server", sent)  # (none in STA04A: the MAA settled it)
    assert client.machine.vas == client.machine.vms == minor + 1
    assert client.machine.state == server.machine.state == "STA713"
    pair.events["client"].clear()
    after = client.machine.minor_sync(confirm=True)  # the next one is confirmed as usual
    pair.pump()
    assert pair.events["client"] == [ev.MinorSyncConfirm(after, None)]


def test_an_activity_end_that_crossed_our_minor_sync_point_supersedes_it() -> None:
    pair = symmetric(ACTIVITIES)
    client, server = pair.client, pair.server
    minor = client.machine.minor_sync(confirm=True)
    end = server.machine.activity_end(b"done")
    pair.pump()
    assert pair.events["client"] == [ev.MinorSyncSuperseded(minor, end, activity_end=True),
                                     ev.ActivityEndIndication(end, b"done")]  # fmt: skip
    assert pair.kinds("server") == ["MinorSyncIndication", "ActivityEndConfirm"]
    assert not client.machine.activity_in_progress and client.machine.state == "STA713"


def test_only_confirmed_points_still_waiting_are_superseded() -> None:
    """A point without confirm asks for nothing; one already confirmed is done."""
    pair = symmetric()
    client, server = pair.client, pair.server
    confirmed = client.machine.minor_sync(confirm=True)
    pair.pump()
    assert pair.events["client"] == [ev.MinorSyncConfirm(confirmed, None)]
    pair.events["client"].clear()
    client.machine.minor_sync(confirm=False)
    waiting = client.machine.minor_sync(confirm=True)
    major = server.machine.major_sync()
    pair.pump()
    assert pair.events["client"] == [ev.MinorSyncSuperseded(waiting, major),
                                     ev.MajorSyncIndication(major, None)]  # fmt: skip


def test_without_symmetric_synchronize_the_peers_point_supersedes_ours() -> None:
    """Half-duplex: a peer that answers for itself (a relay, ``auto_answer=False``) takes
    the tokens and sets its own points before it answers ours: its MAP, or its MIP, sets
    V(A) = V(M) (Table A-4) and our MIA can no longer come."""
    pair = AgentPair(HALF, OPTS)
    pair.server.auto_answer = False
    pair.open(hello=None)
    client, server = pair.client, pair.server
    first = client.machine.minor_sync(confirm=True)
    client.machine.give_tokens(client.machine.tokens_owned)
    pair.pump()
    major = server.machine.major_sync()
    pair.pump()
    assert [e for e in pair.events["client"] if isinstance(e, ev.MinorSyncSuperseded)] == [
        ev.MinorSyncSuperseded(first, major)]  # fmt: skip
    server.machine.give_tokens(Token.DATA | Token.MINOR_SYNC)  # (after its MAA came)
    pair.pump()
    second = client.machine.minor_sync(confirm=True)
    client.machine.give_tokens(Token.DATA | Token.MINOR_SYNC)
    pair.pump()
    pair.events["client"].clear()
    theirs = server.machine.minor_sync(confirm=False)
    pair.pump()
    assert pair.events["client"] == [ev.MinorSyncSuperseded(second, None),
                                     ev.MinorSyncIndication(theirs, False, None)]  # fmt: skip


def test_with_journals_the_superseded_point_counts_once_on_both_sides() -> None:
    """Recovery: the peer counts our point answered when it tells its application of it
    (in STA04A, unanswered), and ours counts it answered when the MAP supersedes it: the
    counts a resume exchanges agree, so nothing is made up and nothing made again.  An
    acknowledgement point superseded with it is no news for the application."""
    pair = symmetric()
    client, server = pair.client, pair.server
    client.journal, server.journal = Journal(1 << 20), Journal(1 << 20)
    client.machine.send_data(b"m")
    client.journal.append(b"m")
    client.journal.since = pair.now
    client.acknowledge(pair.now + 1.0)  # (an acknowledgement point, due by time)
    mark = client.machine.vms - 1
    minor = client.machine.minor_sync(confirm=True, user_data=b"mine")
    client.journal.more_requests().ask(MINOR, ev.MinorSyncConfirm(minor, None))
    major = server.machine.major_sync(b"cp")
    pair.pump()
    assert [e for e in pair.events["client"] if not isinstance(e, ev.DataIndication)] == [
        ev.MinorSyncSuperseded(minor, major), ev.MajorSyncIndication(major, b"cp")]
    assert not client.journal.is_mark(mark)  # (void: its MAA settled it)
    mine, theirs = client.journal.requests, server.journal.requests
    assert mine is not None and theirs is not None
    assert not mine.asked and mine.confirmed == theirs.answered == 1
    mine.peer_counts(theirs.counts())  # a resume's exchange of counts
    theirs.peer_counts(mine.counts())
    assert mine.take_settled() == [] and not mine.asked and mine.confirmed == 1
    assert theirs.expected is None  # (not made again, so not expected again)


def test_a_checkpoint_the_application_answers_still_supersedes_at_once() -> None:
    """``defer_checkpoints``: the MAP waits for the application (``answer_checkpoint``);
    our point is superseded as soon as the MAP is here, and the answer goes out later."""
    pair = symmetric()
    client, server = pair.client, pair.server
    client.defer_checkpoints = True
    minor = client.machine.minor_sync(confirm=True)
    major = server.machine.major_sync(b"cp")
    pair.pump()
    assert pair.events["client"] == [ev.MinorSyncSuperseded(minor, major),
                                     ev.MajorSyncIndication(major, b"cp")]  # fmt: skip
    assert client.machine.state == "STA10A" and "MajorSyncConfirm" not in pair.kinds("server")
    client.answer_checkpoint()
    pair.pump()
    assert pair.kinds("server")[-1] == "MajorSyncConfirm"
    pair.events["client"].clear()
    after = client.machine.minor_sync(confirm=True)
    pair.pump()
    assert pair.events["client"] == [ev.MinorSyncConfirm(after, None)]
