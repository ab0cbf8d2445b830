"""The recovery core without sockets: two sans-I/O agents and their journals, driven by
Hypothesis.  Octets move between them in chunks of any size and the connection is lost at
any byte position (mid-SPDU, mid-handshake, mid-resume); each new connection resumes the
session as the binding does (hello with the count received, welcome with the responder's,
both replay what the other lacks).  Every message (S-DATA and S-TYPED-DATA, mixed: one
count) arrives exactly once and in order, and once the link is healthy and the time has
passed, the journals hold nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionlayer.agent import Hello, Options, SessionAgent, Welcome
from sessionlayer.aio.client import RESUMABLE_CONFIG
from sessionlayer.machine import events as ev
from sessionlayer.recovery import Journal
from sessionlayer.recovery.journal import Typed
from sessionlayer.spdu.types import ConnectionId

SID = "5" * 32
OPTIONS = Options(ack_bytes=2048, ack_interval=0.5, keepalive_interval=None, idle_timeout=None)
CID = ConnectionId(common_ref=b"prop")


@dataclass
class End:
    role: str
    journal: Journal = field(default_factory=lambda: Journal(1 << 30))
    got: list[bytes] = field(default_factory=list)  # (a typed message as Typed)
    sent: list[bytes] = field(default_factory=list)
    agent: SessionAgent | None = None
    open: bool = False  # the session is established on the current connection
    wire: bytearray = field(default_factory=bytearray)  # written, not yet delivered


class Link:
    """Both ends, the current connection, the clock."""

    def __init__(self) -> None:
        self.a = End("initiator")
        self.b = End("responder")
        self.now = 0.0
        self.started = False  # the first accept reached the initiator
        self.connect()

    def connect(self) -> None:
        for end in (self.a, self.b):
            end.agent = SessionAgent(end.role, RESUMABLE_CONFIG, OPTIONS)  # type: ignore[arg-type]
            end.open = False
            end.wire.clear()
            end.agent.connection_made(self.now)
        self.flush()

    def cut(self) -> None:
        self.connect()

    def flush(self) -> None:
        for end in (self.a, self.b):
            assert end.agent is not None
            for data in end.agent.data_to_send():
                end.wire += data
            self.handle(end)

    def handle(self, end: End) -> None:
        agent = end.agent
        assert agent is not None
        if end is self.a and not end.open and agent.rfc.tpdu_size is not None and (
            agent.hello is None and not agent.machine.is_open and not agent.machine.is_closed
        ):  # COTP is up: the CN (a hello; with a resume token once the session exists)
            if self.started:
                hello = Hello(recovery=True, resume="t", recv=end.journal.received)
            else:
                hello = Hello(recovery=True)
            agent.connect(None, CID, hello)
        for event in agent.events():
            if isinstance(event, ev.ConnectIndication):  # the responder
                hello = agent.indication(event)
                assert hello is not None and hello.recovery
                if hello.resume is None:
                    agent.accept(chosen={}, session_id=SID,
                                 welcome=Welcome(session_id=SID, token="0.0.0"))  # fmt: skip
                    agent.journal = end.journal
                    end.open = True
                else:
                    agent.accept(chosen={}, session_id=SID, welcome=Welcome(
                        session_id=SID, token="0.0.0", resumed="resumed",
                        recv=end.journal.received))  # fmt: skip
                    agent.journal = end.journal
                    self.replay(end, agent.replay(hello.recv or 0))
                    end.open = True
            elif isinstance(event, ev.ConnectConfirm):  # the initiator
                welcome = agent.confirmed(event)
                assert welcome is not None
                agent.journal = end.journal
                if welcome.resumed is not None:
                    assert self.started
                    self.replay(end, agent.replay(welcome.recv or 0))
                self.started = True
                end.open = True
            elif isinstance(event, ev.DataIndication):
                end.got.append(event.data)
                end.journal.received += 1
            elif isinstance(event, ev.TypedDataIndication):
                end.got.append(Typed(event.data))
                end.journal.received += 1
            else:
                assert not isinstance(
                    event, ev.ProviderAbortIndication | ev.UserAbortIndication
                ), event
        for data in agent.data_to_send():
            end.wire += data

    def replay(self, end: End, items: list[bytes]) -> None:
        assert end.agent is not None
        for item in items:
            if type(item) is Typed:
                end.agent.machine.send_typed_data(bytes(item))
            else:
                end.agent.machine.send_data(item)
            end.journal.queued -= 1

    def send(self, end: End, data: bytes) -> None:
        end.sent.append(data)
        agent = end.agent
        if end.open and agent is not None and agent.machine.is_open:
            if type(data) is Typed:
                agent.machine.send_typed_data(bytes(data))
            else:
                agent.machine.send_data(data)
            end.journal.append(data)
            if end.journal.since is None:
                end.journal.since = self.now
        else:  # the session is not up on this connection: kept for the replay
            end.journal.append(data)
            end.journal.queued += 1
        self.flush()

    def deliver(self, end: End, nbytes: int) -> None:
        other = self.b if end is self.a else self.a
        chunk = bytes(end.wire[:nbytes])
        del end.wire[:nbytes]
        if chunk:
            assert other.agent is not None
            other.agent.receive_data(chunk, self.now)
            self.handle(other)
            self.flush()

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for end in (self.a, self.b):
            assert end.agent is not None
            deadline = end.agent.next_deadline()
            if deadline is not None and deadline <= self.now:
                end.agent.handle_timer(self.now)
        self.flush()

    def settle(self) -> None:
        """A healthy link: deliver everything, let every acknowledgement point be set."""
        for _ in range(200):
            for _ in range(50):
                if not (self.a.wire or self.b.wire):
                    break
                self.deliver(self.a, len(self.a.wire))
                self.deliver(self.b, len(self.b.wire))
            if not (self.a.journal.held or self.b.journal.held) and not (
                self.a.wire or self.b.wire
            ):
                return
            self.tick(OPTIONS.ack_interval)
        raise AssertionError("the link did not settle")


payload = st.builds(
    lambda data, typed: Typed(data) if typed else data,
    st.binary(min_size=0, max_size=3000), st.booleans(),
)  # fmt: skip
step = st.one_of(
    st.tuples(st.just("send_a"), payload),
    st.tuples(st.just("send_b"), payload),
    st.tuples(st.just("deliver_a"), st.integers(1, 5000)),
    st.tuples(st.just("deliver_b"), st.integers(1, 5000)),
    st.tuples(st.just("tick"), st.floats(0.0, 1.0)),
    st.tuples(st.just("cut"), st.none()),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=80))
def test_exactly_once_in_order_whatever_is_lost(steps: list[tuple[str, object]]) -> None:
    link = Link()
    # The session exists once the first accept went through (as connect() returns it).
    link.deliver(link.a, 10_000)
    link.deliver(link.b, 10_000)
    link.deliver(link.a, 10_000)
    link.deliver(link.b, 10_000)
    assert link.started
    for kind, arg in steps:
        if kind == "send_a":
            link.send(link.a, arg)  # type: ignore[arg-type]
        elif kind == "send_b":
            link.send(link.b, arg)  # type: ignore[arg-type]
        elif kind == "deliver_a":
            link.deliver(link.a, arg)  # type: ignore[arg-type]
        elif kind == "deliver_b":
            link.deliver(link.b, arg)  # type: ignore[arg-type]
        elif kind == "tick":
            link.tick(arg)  # type: ignore[arg-type]
        else:
            link.cut()
        for end in (link.a, link.b):  # bounded: never more than what was not confirmed
            assert end.journal.held <= len(end.sent) - end.journal.acked
    link.cut()  # a last resume, then a healthy link
    link.settle()
    for got, sent in ((link.b.got, link.a.sent), (link.a.got, link.b.sent)):
        assert got == sent
        assert [type(m) for m in got] == [type(m) for m in sent]  # each of its kind
    assert link.a.journal.held == link.b.journal.held == 0
    assert link.a.journal.size == link.b.journal.size == 0
