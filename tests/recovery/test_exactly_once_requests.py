"""Confirmed requests exactly once across resumes, and expedited data journaled: two
sans-I/O agents and their journals, with the connection lost at the moment that matters.

The harness does what the binding does (aio/connection.py, aio/reconnect.py): the resume's
hello carries the initiator's counts (``Journal.counts``), the responder's agent carries the
session's journal before its accept (which puts its counts in the welcome and takes the
hello's), the initiator takes the welcome's (``Journal.peer_counts``).  A request whose
answer was not made up by the resume (``Asked.settled``) is made again once resumed, as
``Connection.confirm`` does; the expedited messages the peer lacks are sent again.

Without the exactly-once bookkeeping each of these requests would be made again after the
resume and indicated twice at the peer (docs/recovery.md, "During the outage")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionlayer.agent import Hello, Options, SessionAgent, Welcome
from sessionlayer.aio.client import RESUMABLE_CONFIG
from sessionlayer.errors import LocalError
from sessionlayer.machine import SessionConfig, SessionMachine
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Journal
from sessionlayer.recovery import journal as rq
from sessionlayer.spdu.codes import FunctionalUnit as FU
from sessionlayer.spdu.codes import ResyncType, Token
from sessionlayer.spdu.types import ConnectionId

SID = "6" * 32
OPTIONS = Options(ack_bytes=1 << 20, ack_interval=0.5, keepalive_interval=None,
                  idle_timeout=None)  # fmt: skip
CID = ConnectionId(common_ref=b"once")
#: Capability data needs its unit and activity management (it goes outside activities).
WITH_CD = SessionConfig(functional_units=FU.DUPLEX | FU.ACTIVITY | FU.CAPABILITY_DATA
                        | FU.MAJOR_SYNC | FU.SYMMETRIC_SYNC)  # fmt: skip
#: Activities: data and sync points only inside one.
WITH_ACTIVITIES = SessionConfig(functional_units=FU.DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC
                                | FU.SYMMETRIC_SYNC | FU.EXPEDITED)  # fmt: skip

Request = Callable[[SessionMachine], Any]


@dataclass
class Pending:
    """A confirmed request the requester's application waits for (``Connection.confirm``)."""

    confirm: type
    request: Request
    holder: rq.Asked
    answer: ev.Event | None = None


@dataclass
class End:
    role: str
    config: SessionConfig
    journal: Journal = field(default_factory=lambda: Journal(1 << 30))
    agent: SessionAgent | None = None
    told: list[ev.Event] = field(default_factory=list)  # what the application was told
    pending: list[Pending] = field(default_factory=list)
    wire: bytearray = field(default_factory=bytearray)  # written, not delivered yet
    open: bool = False
    defer: bool = False  # checkpoints wait for the application (``on_checkpoint``)
    replies: list[bytes] = field(default_factory=list)  # capability data answers given
    expedited: list[bytes] = field(default_factory=list)

    def requests(self) -> rq.Requests:
        return self.journal.more_requests()


class Link:
    """Both ends, the current connection, the clock."""

    def __init__(self, config: SessionConfig = RESUMABLE_CONFIG) -> None:
        self.a = End("initiator", config)
        self.b = End("responder", config)
        self.now = 0.0
        self.started = False
        self.connect()
        self.settle()
        assert self.a.open and self.b.open

    # ------------------------------------------------------------ the connection

    def connect(self) -> None:
        for end in (self.a, self.b):
            end.agent = SessionAgent(end.role, end.config, OPTIONS)  # type: ignore[arg-type]
            end.agent.defer_checkpoints = end.defer
            end.agent.on_capability_data = self._reply(end)
            end.open = False
            end.wire.clear()
            end.agent.connection_made(self.now)
        self.flush()

    def _reply(self, end: End) -> Callable[[ev.CapabilityDataIndication], bytes]:
        def reply(event: ev.CapabilityDataIndication) -> bytes:
            answer = b"reply %d to %s" % (len(end.replies), event.user_data or b"-")
            end.replies.append(answer)
            return answer

        return reply

    def cut(self) -> None:
        """The connection is lost (what is on the wire with it); a new one resumes."""
        self.connect()
        self.settle()
        assert self.a.open and self.b.open

    def flush(self) -> None:
        for end in (self.a, self.b):
            self.handle(end)

    def handle(self, end: End) -> None:
        agent = end.agent
        assert agent is not None
        if end is self.a and not end.open and agent.rfc.tpdu_size is not None and (
            agent.hello is None and not agent.machine.is_open and not agent.machine.is_closed
        ):
            if self.started:
                hello = Hello(recovery=True, resume="t", recv=end.journal.received,
                              counts=end.journal.counts())  # fmt: skip
            else:
                hello = Hello(recovery=True)
            agent.connect(None, CID, hello)
        for event in agent.events():
            if isinstance(event, ev.ConnectIndication):
                hello = agent.indication(event)
                assert hello is not None
                if hello.resume is None:
                    agent.accept(chosen={}, session_id=SID,
                                 welcome=Welcome(session_id=SID, token="0.0.0"))  # fmt: skip
                    agent.journal = end.journal
                else:
                    agent.journal = end.journal  # (Connection.adopt)
                    agent.accept(chosen={}, session_id=SID, welcome=Welcome(
                        session_id=SID, token="0.0.0", resumed="resumed",
                        recv=end.journal.received))  # fmt: skip
                    self.resumed(end, agent.replay(hello.recv or 0))
                end.open = True
            elif isinstance(event, ev.ConnectConfirm):
                welcome = agent.confirmed(event)
                assert welcome is not None
                agent.journal = end.journal
                if welcome.resumed is not None:
                    items = agent.replay(welcome.recv or 0)
                    end.journal.peer_counts(welcome.counts)
                    self.resumed(end, items)
                self.started = True
                end.open = True
            elif isinstance(event, ev.DataIndication):
                end.journal.received += 1
                end.told.append(event)
            else:
                assert not isinstance(event, ev.ProviderAbortIndication | ev.UserAbortIndication
                                      ), event  # fmt: skip
                end.told.append(event)
                for pending in end.pending:
                    if isinstance(event, pending.confirm) and pending.answer is None:
                        pending.answer = event
                        break
                if isinstance(event, ev.ExpeditedDataIndication):
                    end.expedited.append(event.data)
        end.wire += b"".join(agent.data_to_send())

    def resumed(self, end: End, items: list[bytes]) -> None:
        """``Connection.resumed``: made-up answers taken, expedited first, then the data."""
        agent = end.agent
        assert agent is not None
        requests = end.journal.requests
        if requests is not None:
            for asked in requests.take_settled():
                for pending in end.pending:
                    if pending.holder is asked:
                        pending.answer = asked.settled
        ex = end.journal.expedited
        for data in ex.replay() if ex is not None else []:
            agent.machine.send_expedited(data)
            ex.queued -= 1  # type: ignore[union-attr]
        for item in items:
            agent.machine.send_data(item)
            end.journal.queued -= 1

    def deliver(self, end: End, nbytes: int | None = None) -> None:
        """What ``end`` wrote (``nbytes`` of it) reaches the other end."""
        other = self.b if end is self.a else self.a
        nbytes = len(end.wire) if nbytes is None else nbytes
        chunk = bytes(end.wire[:nbytes])
        del end.wire[:nbytes]
        if chunk:
            assert other.agent is not None
            other.agent.receive_data(chunk, self.now)
            self.handle(other)
            self.flush()

    def settle(self) -> None:
        """A healthy link: everything written is delivered (both ways, until quiet)."""
        self.flush()
        for _ in range(100):
            if not (self.a.wire or self.b.wire):
                return
            self.deliver(self.a)
            self.deliver(self.b)
        raise AssertionError("the link did not settle")

    # ------------------------------------------------------------ the binding's requests

    def ask(self, end: End, kind: str, confirm: type, request: Request,
            answer: Callable[[Any], ev.Event] | None = None) -> Pending:  # fmt: skip
        agent = end.agent
        assert agent is not None
        result = request(agent.machine)  # (no token fetching here: LocalError if not now)
        asked = end.requests().ask(kind, answer(result) if answer is not None else None)
        pending = Pending(confirm, request, asked)
        end.pending.append(pending)
        self.flush()
        return pending

    def again(self) -> None:
        """After a resume: the requests without an answer are made again (in order)."""
        for end in (self.a, self.b):
            for pending in end.pending:
                if pending.answer is None and not pending.holder.out:
                    assert end.agent is not None
                    pending.request(end.agent.machine)
                    end.requests().again(pending.holder)
            self.flush()


def major(data: bytes) -> tuple[str, type, Request, Callable[[Any], ev.Event]]:
    return (rq.MAJOR, ev.MajorSyncConfirm, lambda m: m.major_sync(user_data=data),
            lambda serial: ev.MajorSyncConfirm(serial=serial, user_data=None))  # fmt: skip


def told(end: End, kind: type) -> list[Any]:
    return [e for e in end.told if isinstance(e, kind)]


# ------------------------------------------------------------ made up: the answer was lost


def test_a_checkpoint_whose_answer_was_lost_is_confirmed_by_the_resume_not_set_twice() -> None:
    link = Link()
    pending = link.ask(link.a, *major(b"cp 1"))
    link.deliver(link.a)  # the MAP reaches the responder, which confirms it (MAA) ...
    assert len(told(link.b, ev.MajorSyncIndication)) == 1 and link.b.wire
    link.cut()  # ... and the MAA is lost with the connection
    assert isinstance(pending.answer, ev.MajorSyncConfirm)  # made up from the counts
    link.again()
    link.settle()
    assert [e.user_data for e in told(link.b, ev.MajorSyncIndication)] == [b"cp 1"]
    assert link.a.journal.requests is not None and not link.a.journal.requests.asked
    # The session goes on: the next checkpoint is a new one, told once.
    nxt = link.ask(link.a, *major(b"cp 2"))
    link.settle()
    assert nxt.answer is not None
    assert [e.user_data for e in told(link.b, ev.MajorSyncIndication)] == [b"cp 1", b"cp 2"]


def test_a_checkpoint_lost_on_its_way_is_made_again_and_told_once() -> None:
    link = Link()
    pending = link.ask(link.a, *major(b"cp"))
    link.cut()  # the MAP never reached the responder
    assert pending.answer is None
    link.again()
    link.settle()
    assert isinstance(pending.answer, ev.MajorSyncConfirm)
    assert [e.user_data for e in told(link.b, ev.MajorSyncIndication)] == [b"cp"]


def test_the_same_request_again_after_its_answer_came_is_a_new_one() -> None:
    """Two identical checkpoints, nothing between them: the first confirmed, the second lost
    on its way.  The counts say the first's answer arrived: the second, made again, is
    told (a match on what it carries alone would have swallowed it)."""
    link = Link()
    first = link.ask(link.a, *major(b"same"))
    link.settle()
    assert first.answer is not None
    second = link.ask(link.a, *major(b"same"))
    link.cut()  # the second MAP is lost
    link.again()
    link.settle()
    assert second.answer is not None
    assert [e.user_data for e in told(link.b, ev.MajorSyncIndication)] == [b"same", b"same"]


def test_a_minor_sync_point_whose_answer_was_lost_is_told_once_from_either_side() -> None:
    link = Link()
    for end, other in ((link.a, link.b), (link.b, link.a)):
        pending = link.ask(end, rq.MINOR, ev.MinorSyncConfirm,
                           lambda m: m.minor_sync(confirm=True, user_data=b"mine"),
                           lambda serial: ev.MinorSyncConfirm(serial=serial, user_data=None))
        link.deliver(end)  # the MIP arrives; its MIA is lost
        link.cut()
        assert isinstance(pending.answer, ev.MinorSyncConfirm)
        link.again()
        link.settle()
        assert len(told(other, ev.MinorSyncIndication)) == 1


def minor(data: bytes) -> tuple[str, type, Request, Callable[[Any], ev.Event]]:
    return (rq.MINOR, ev.MinorSyncConfirm, lambda m: m.minor_sync(confirm=True, user_data=data),
            lambda serial: ev.MinorSyncConfirm(serial=serial, user_data=None))  # fmt: skip


def test_a_minor_sync_point_a_checkpoint_superseded_is_neither_made_up_nor_made_again() -> None:
    """The responder's MAP and the initiator's confirmed MIP cross: the MIP gets no MIA
    (the responder has none in STA04A, its MAA settles it) and is superseded.  Both sides
    count it answered, so the next resume makes no answer up for it (which would go to the
    next request of its kind) and does not make it again (told twice)."""
    link = Link()
    assert link.a.agent is not None
    link.a.agent.machine.give_tokens(Token.MAJOR_ACTIVITY)
    link.settle()
    point = link.ask(link.a, *minor(b"mine"))
    checkpoint = link.ask(link.b, *major(b"cp"))
    link.settle()  # each reaches the other after its own went out
    (superseded,) = told(link.a, ev.MinorSyncSuperseded)
    assert superseded.major is not None and checkpoint.answer is not None
    assert point.answer is None
    link.a.pending.remove(point)  # (its sync() raised SyncSuperseded: nobody waits)
    mine, theirs = link.a.requests(), link.b.requests()
    assert not mine.asked and mine.confirmed == theirs.answered
    link.cut()
    assert not mine.asked and not mine.take_settled()
    link.again()
    link.settle()
    assert [e.user_data for e in told(link.b, ev.MinorSyncIndication)] == [b"mine"]
    after = link.ask(link.a, *minor(b"next"))  # the next one: its own answer, told once
    link.settle()
    assert isinstance(after.answer, ev.MinorSyncConfirm)
    assert [e.user_data for e in told(link.b, ev.MinorSyncIndication)] == [b"mine", b"next"]
    assert mine.confirmed == theirs.answered and not mine.asked


# ------------------------------------------------------------ made again: only the peer answers


def test_capability_data_whose_answer_was_lost_gets_the_same_reply_without_a_second_call() -> None:
    link = Link(WITH_CD)
    pending = link.ask(link.a, rq.CAPABILITY, ev.CapabilityDataConfirm,
                       lambda m: m.send_capability_data(b"status?"))
    link.deliver(link.a)  # the CD arrives, the application replies; the CDA is lost
    assert link.b.replies == [b"reply 0 to status?"]
    link.cut()
    assert pending.answer is None  # only the responder has the reply
    link.again()
    link.settle()
    assert isinstance(pending.answer, ev.CapabilityDataConfirm)
    assert pending.answer.user_data == b"reply 0 to status?"
    assert link.b.replies == [b"reply 0 to status?"]  # its callback ran once
    assert len(told(link.b, ev.CapabilityDataIndication)) == 1
    # The same question again is a new one: asked and answered anew.
    again = link.ask(link.a, rq.CAPABILITY, ev.CapabilityDataConfirm,
                     lambda m: m.send_capability_data(b"status?"))
    link.settle()
    assert again.answer is not None and again.answer.user_data == b"reply 1 to status?"


def test_capability_data_lost_on_its_way_is_asked_once() -> None:
    link = Link(WITH_CD)
    pending = link.ask(link.a, rq.CAPABILITY, ev.CapabilityDataConfirm,
                       lambda m: m.send_capability_data(b"q"))
    link.cut()
    link.again()
    link.settle()
    assert pending.answer is not None and pending.answer.user_data == b"reply 0 to q"
    assert link.b.replies == [b"reply 0 to q"]


# ------------------------------------------------------------ the application had not answered


def test_a_checkpoint_its_application_answers_after_the_resume_is_confirmed_once() -> None:
    """The responder's application makes the checkpoint durable (``on_checkpoint``) and the
    connection is lost before it is done: the MAP made again after the resume is held
    (not told again), and the application's answer, when it comes, is what goes out."""
    link = Link()
    link.b.defer = True
    link.cut()  # (so that the responder's agent defers checkpoints)
    pending = link.ask(link.a, *major(b"durable"))
    link.settle()
    assert len(told(link.b, ev.MajorSyncIndication)) == 1 and pending.answer is None
    link.cut()  # the application is still at it
    assert pending.answer is None  # nothing was answered: nothing is made up
    link.again()
    link.settle()
    assert len(told(link.b, ev.MajorSyncIndication)) == 1  # held, not told again
    assert pending.answer is None
    assert link.b.agent is not None
    link.b.agent.answer_checkpoint()  # the application is done: its answer goes out, once
    link.settle()
    assert isinstance(pending.answer, ev.MajorSyncConfirm)
    assert link.b.journal.requests is not None and link.b.journal.requests.answered == 1


def test_a_checkpoint_answered_during_the_outage_is_confirmed_by_the_resume() -> None:
    link = Link()
    link.b.defer = True
    link.cut()
    pending = link.ask(link.a, *major(b"durable"))
    link.settle()
    old = link.b.agent
    assert old is not None
    link.connect()  # lost ...
    old.answer_checkpoint(live=False)  # ... and the application answered meanwhile
    link.settle()  # the resume
    assert isinstance(pending.answer, ev.MajorSyncConfirm)
    link.again()
    link.settle()
    assert len(told(link.b, ev.MajorSyncIndication)) == 1


def test_a_checkpoint_answered_before_it_is_made_again_is_answered_as_it_comes() -> None:
    """The application answers after the responder sent its counts but before the MAP made
    again arrived: the MAP is answered as it arrives (not told, not held)."""
    link = Link()
    link.b.defer = True
    link.cut()
    pending = link.ask(link.a, *major(b"durable"))
    link.settle()
    link.cut()
    assert link.b.agent is not None
    link.b.agent.answer_checkpoint()  # (nothing waits on this connection yet: counted)
    link.again()
    link.settle()
    assert isinstance(pending.answer, ev.MajorSyncConfirm)
    assert len(told(link.b, ev.MajorSyncIndication)) == 1


# ------------------------------------------------------------ activities


def test_an_activity_end_whose_answer_was_lost_ends_it_on_both_sides_once() -> None:
    link = Link(WITH_ACTIVITIES)
    assert link.a.agent is not None
    link.a.agent.call(lambda m: m.activity_start(b"act-1"))
    link.settle()
    pending = link.ask(link.a, rq.END, ev.ActivityEndConfirm,
                       lambda m: m.activity_end(user_data=b"done"),
                       lambda serial: ev.ActivityEndConfirm(serial=serial, user_data=None))
    link.deliver(link.a)  # the AE arrives and is answered; the AEA is lost
    link.cut()
    assert isinstance(pending.answer, ev.ActivityEndConfirm)
    assert link.a.journal.requests is not None and link.a.journal.requests.ended_activity
    link.settle()
    assert len(told(link.b, ev.ActivityEndIndication)) == 1
    assert len(told(link.b, ev.ActivityStartIndication)) == 1


# ------------------------------------------------------------ expedited data


def test_expedited_data_lost_with_the_connection_arrives_once_after_the_resume() -> None:
    link = Link()
    ex = link.a.journal.more_expedited()

    def send(data: bytes) -> None:
        assert link.a.agent is not None
        link.a.agent.machine.send_expedited(data)
        ex.append(data)
        link.flush()

    send(b"urgent 1")
    send(b"urgent 2")
    link.deliver(link.a, 10)  # (part of the first: both are lost with the connection)
    link.cut()
    assert link.b.expedited == [b"urgent 1", b"urgent 2"]
    send(b"urgent 3")
    link.deliver(link.a)  # it arrives; the connection is lost before any confirm
    link.cut()
    assert link.b.expedited == [b"urgent 1", b"urgent 2", b"urgent 3"]  # (not sent again)
    # An acknowledgement point confirms them: nothing is held afterwards.
    link.a.journal.since = link.now
    link.now += 1.0
    assert link.a.agent is not None
    send(b"urgent 4")
    link.a.agent.handle_timer(link.now)
    link.settle()
    assert link.b.expedited == [b"urgent 1", b"urgent 2", b"urgent 3", b"urgent 4"]
    assert not ex.items and ex.acked == 4


def test_expedited_data_sent_during_the_outage_waits_in_the_journal() -> None:
    link = Link()
    ex = link.a.journal.more_expedited()
    link.connect()  # lost; not resumed yet
    ex.append(b"while down")
    ex.queued += 1
    link.settle()
    assert link.b.expedited == [b"while down"]


# ------------------------------------------------------------ any moment


step = st.one_of(
    st.tuples(st.just("ask"), st.sampled_from(["major", "minor"]), st.booleans()),
    st.tuples(st.just("deliver"), st.booleans(), st.integers(1, 400)),
    st.tuples(st.just("cut"), st.none(), st.none()),
    st.tuples(st.just("answer"), st.none(), st.none()),
)


def test_after_a_resync_a_lost_checkpoint_is_made_again_not_made_up() -> None:
    """A resync throws away answers that cross it (STA05A), so the two sides' request
    counts no longer match: from then on a resume makes no answer up.  Here A's MIA
    crosses its RS; A's next checkpoint is lost with the connection, and must reach B
    (made again), not be confirmed by a made-up answer B never gave."""
    link = Link()
    a, b = link.a, link.b
    link.ask(a, rq.MINOR, ev.MinorSyncConfirm,
             lambda m: m.minor_sync(confirm=True, user_data=b"m1"),
             lambda s: ev.MinorSyncConfirm(serial=s, user_data=None))  # fmt: skip
    link.deliver(a)  # the MIP reaches B, whose MIA waits on the wire ...

    def resync(m: SessionMachine) -> int:
        m.resync(ResyncType.ABANDON)
        return int(m.vm)

    link.ask(a, rq.RESYNC, ev.ResyncConfirm, resync,
             lambda s: ev.ResyncConfirm(serial=s, tokens=0, user_data=None))  # fmt: skip
    link.settle()  # ... and crosses A's RS: A throws it away
    assert a.journal.counts()[:2] == b.journal.counts()[:2] == (None, None)
    checkpoint = link.ask(a, *major(b"cp"))
    a.wire.clear()  # the MAP is lost with the connection
    link.cut()
    link.again()
    link.settle()
    assert [e.user_data for e in told(b, ev.MajorSyncIndication)] == [b"cp"]
    assert isinstance(checkpoint.answer, ev.MajorSyncConfirm)


def test_expedited_data_sent_during_the_outage_reaches_a_peer_that_does_not_count() -> None:
    """A peer that sends no counts (an earlier sessionlayer): what was on the wire before
    the cut is dropped (what it has of it is unknown), what was sent during the outage
    goes after the resume, and acknowledgement points cover it then."""
    journal = Journal(1 << 20)
    ex = journal.more_expedited()
    ex.append(b"on the wire")
    for data in (b"outage 1", b"outage 2"):
        ex.append(data)
        ex.queued += 1  # (send_expedited while detached: Connection does so)
    journal.counts()
    journal.peer_counts(None)
    assert ex.replay() == [b"outage 1", b"outage 2"] and ex.queued == 2
    ex.queued = 0  # (both written after the resume: Connection counts them out)
    journal.mark(7)
    journal.confirmed(7)
    assert not ex.items


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(step, max_size=60), st.booleans())
def test_every_request_is_told_once_and_answered_whatever_is_lost(
    steps: list[tuple[str, Any, Any]], defer: bool
) -> None:
    """Requests from both sides (checkpoints, minor sync points), octets delivered in
    chunks of any size, the connection lost at any byte, the responder's application
    answering the checkpoints it defers whenever: once the link is healthy, every request
    was told to the peer's application exactly once and answered."""
    link = Link()
    link.b.defer = defer
    link.cut()
    made: dict[str, list[bytes]] = {"initiator": [], "responder": []}
    n = 0
    for kind, arg, arg2 in steps:
        if kind == "ask":
            end = link.a if arg2 else link.b
            n += 1
            data = b"%s %d" % (arg.encode(), n)
            if arg == "major":
                what = major(data)
            else:
                what = (rq.MINOR, ev.MinorSyncConfirm,
                        lambda m, d=data: m.minor_sync(confirm=True, user_data=d),
                        lambda s: ev.MinorSyncConfirm(serial=s, user_data=None))  # fmt: skip
            if any(p.answer is None for e in (link.a, link.b) for p in e.pending):
                continue  # (one at a time: X.225 has no room for crossing checkpoints)
            try:
                link.ask(end, *what)
            except LocalError:
                continue  # (not now: the other side's request holds the flow)
            made[end.role].append(data)
        elif kind == "deliver":
            link.deliver(link.a if arg else link.b, arg2)
        elif kind == "cut":
            link.cut()
            link.again()
        elif kind == "answer" and link.b.agent is not None:
            link.b.agent.answer_checkpoint()
            link.flush()
    for _ in range(5):  # a healthy link: deliver, answer, make again what waits
        link.settle()
        assert link.b.agent is not None
        link.b.agent.answer_checkpoint()
        link.flush()
        link.again()
    link.settle()
    for end, other in ((link.a, link.b), (link.b, link.a)):
        assert all(p.answer is not None for p in end.pending), end.role
        got = [e.user_data for e in other.told
               if isinstance(e, ev.MajorSyncIndication | ev.MinorSyncIndication)]
        assert got == made[end.role], end.role


# ------------------------------------------------------------ on the wire


def test_the_counts_travel_in_the_hello_and_the_welcome_and_malformed_ones_are_refused() -> None:
    import pytest

    from sessionlayer.errors import DecodeError

    hello = Hello(recovery=True, resume="ab" * 16 + ".1." + "cd" * 16, recv=4, counts=(1, 2, 3))
    assert Hello.decode(hello.encode()) == hello
    welcome = Welcome(session_id="e" * 32, token="1.2.3", resumed="resumed", recv=5)
    assert Welcome.decode(welcome.encode((7, 8, 9))).counts == (7, 8, 9)
    assert Welcome.decode(welcome.encode()).counts is None  # (an earlier peer says none)
    for bad in (b'"ct":[1,2]', b'"ct":[1,2,-3]', b'"ct":[1,2,3,4]', b'"ct":"1,2,3"',
                b'"ct":[1,2,true]', b'"ct":[1,2,1.5]', b'"ct":[1,2,9007199254740993]'):
        with pytest.raises(DecodeError):
            Hello.decode(b"SLH1{" + bad + b"}")
        with pytest.raises(DecodeError):
            Welcome.decode(b"SLW1{" + bad + b"}")


def test_a_peer_that_does_not_count_gets_what_was_done_before() -> None:
    """No ``ct`` (an earlier sessionlayer): nothing is made up (the request is made again),
    and the expedited messages held are dropped (what the peer has of them is unknown)."""
    journal = Journal(1 << 20)
    requests = journal.more_requests()
    asked = requests.ask(rq.MAJOR, ev.MajorSyncConfirm(serial=1, user_data=None))
    ex = journal.more_expedited()
    ex.append(b"x")
    journal.counts()
    journal.peer_counts(None)
    assert asked.settled is None and not asked.out and list(requests.asked) == [asked]
    assert not ex.items and ex.replay() == []



def test_a_checkpoint_answered_again_after_a_resume_voids_the_marks_it_crossed() -> None:
    """B defers checkpoints; A's MAP is answered (counted) only after a cut, so it is made
    again on the next connection and answered there, while B's acknowledgement point
    crosses it (A, in STA04A, gives it no MIA).  The answer made again settles B's points
    as the first answer would: the mark is voided and what it covered wants a new point.
    Before, it stayed held with no deadline."""
    link = Link()
    link.b.defer = True
    link.cut()
    pending = link.ask(link.a, *major(b"durable"))
    link.settle()
    assert len(told(link.b, ev.MajorSyncIndication)) == 1 and pending.answer is None
    link.cut()
    link.b.agent.answer_checkpoint()  # counted; the MAP made again is answered as it comes
    b = link.b
    b.agent.machine.send_data(b"m")  # B sends, and sets an acknowledgement point ...
    b.journal.append(b"m")
    if b.journal.since is None:
        b.journal.since = link.now
    link.now += 1.0
    b.agent.acknowledge(link.now)
    link.flush()
    mark = b.agent.machine.vms - 1
    assert b.journal.is_mark(mark)
    link.again()  # ... while A makes its MAP again: they cross
    link.settle()
    assert isinstance(pending.answer, ev.MajorSyncConfirm)
    assert not b.journal.is_mark(mark)
    assert b.journal.ack_deadline(0.5) is not None
