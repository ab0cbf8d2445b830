"""``Journal``: what one side of a resumable session keeps across transport connections.

Every S-DATA and S-TYPED-DATA message this side sends is kept until the peer has confirmed
it (a typed one as :class:`Typed`); the count of messages received (both kinds) is kept
too.  When a new transport connection resumes the session,
each side says how many messages it has received (the hello's and the welcome's ``recv``)
and the other replays the rest, in order: every message reaches the peer's application
exactly once.

Confirmation uses the session layer's own means: after ``ack_bytes`` octets, or
``ack_interval`` seconds after the first message not yet covered, the agent sets a
confirmed minor synchronization point (MIP, symmetric synchronize: each direction numbers
its own) marked with :data:`ACK_MARK`; the peer's MIA for it confirms every message sent
before it, and those are dropped.  Acknowledging in batches keeps the data path fast
(one MIP per ``ack_bytes``, not one per message).

Sans I/O: the time is passed in.  Memory is bounded by ``limit`` octets (the user data
held plus :data:`OVERHEAD` per message); past it :attr:`full` holds and the sender waits
or the session ends (``Options.retention_overflow``).

Two smaller parts are made on first use:

* :class:`Expedited` (S-EXPEDITED-DATA): a count and a journal of their own, since X.225
  lets expedited data overtake normal data (one count could not say which of both kinds
  arrived).  An acknowledgement point confirms the expedited messages sent before it too
  (on one transport connection everything arrives in the order it was written); a resume
  replays those the peer lacks (the hello's and the welcome's ``ct``).  At most
  :data:`MAX_EXPEDITED` wait unconfirmed.
* :class:`Requests` (confirmed requests, exactly once): the sync points, activity ends,
  capability data, resyncs and S-CONTROL-GIVE this side asked for and has no answer to
  yet, the count of answers it got, the count of the peer's requests it answered, and the
  last of them it told its application of.  At a resume both sides exchange the two
  counts (in the hello's and the welcome's ``ct``); see :meth:`Requests.peer_counts`.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib

from ..errors import RemoteError
from ..machine.events import Event

__all__ = ["Journal", "Typed", "Expedited", "Requests", "Asked", "Indicated", "request_key",
           "ACK_MARK",
           "OVERHEAD", "MAX_EXPEDITED", "MAJOR", "MINOR", "END", "INTERRUPT", "DISCARD",
           "RESYNC", "CAPABILITY", "CONTROL", "AGAIN", "ENDS"]  # fmt: skip

#: The user data of the minor sync points the agent sets to acknowledge data: the peer's
#: agent answers them and neither application sees them.
ACK_MARK = b"SLK1"
#: What one retained message costs beyond its octets (the bytes object and its deque slot),
#: counted against the limit so that many small messages are bounded too.
OVERHEAD = 64
#: At most this many expedited messages (14 octets each at most) wait unconfirmed, per side:
#: past it ``send_expedited()`` waits for the peer to confirm (or for the resume).
MAX_EXPEDITED = 32
#: A resume's counts besides ``recv`` (the ``ct`` of its hello or welcome): answers got to
#: this side's confirmed requests, the peer's requests answered (both None once skewed),
#: expedited messages received.
Counts = tuple[int | None, int | None, int]

#: The kinds of confirmed requests made exactly once across resumes (the release is not
#: one: a release whose DN was lost is told by the resume's refusal, ``released``).
MAJOR, MINOR, END, INTERRUPT, DISCARD, RESYNC, CAPABILITY, CONTROL = (
    "major", "minor", "end", "interrupt", "discard", "resync", "capability", "control")  # fmt: skip
#: The kinds whose answer only the peer can give: the capability data's reply (user data the
#: peer's application chose), the GIVE TOKENS ACK (the tokens move only if the peer takes
#: them on the new connection).  Such a request, answered but its answer lost, is made
#: again, and the peer answers it again without telling its application.  The others'
#: answers carry nothing the peer's application chose (its agent gives them, or confirms a
#: checkpoint once it is durable): the requester makes them up from the counts instead.
AGAIN = frozenset({CAPABILITY, CONTROL})
#: The requests that end an activity (answered, the activity is over on both sides).
ENDS = frozenset({END, INTERRUPT, DISCARD})
#: The requests a resynchronization, or an activity's interruption or discard, purges.
_PURGED = frozenset({MAJOR, MINOR, END})


class Typed(bytes):
    """An S-TYPED-DATA message in the journal (an S-DATA message is plain ``bytes``): replayed
    as typed data.  Both kinds share one count, in the order they were sent: they travel on
    the one normal flow, so the peer receives them in that order too."""

    __slots__ = ()


class Journal:
    """Sent messages not yet confirmed, and the count of messages received.

    Counters are running totals (what a send updates is kept to three of them: ``items``,
    ``sent`` and ``sent_bytes``; the binding's fast path updates them inline); what is held
    and what is not yet covered by an acknowledgement point are differences of them.
    """

    __slots__ = ("_marks", "acked", "acked_bytes", "expedited", "items", "limit",
                 "marked_bytes", "queued", "received", "replayed_bytes", "replayed_messages",
                 "requests", "sent", "sent_bytes", "since", "skewed", "units")  # fmt: skip

    def __init__(self, limit: int) -> None:
        self.limit = limit  #: most octets held (user data + OVERHEAD per message)
        #: The messages held: sent, not confirmed (the first is number ``acked + 1``).
        self.items: collections.deque[bytes] = collections.deque()
        self.sent = 0  #: messages sent in all (the last one's number)
        self.acked = 0  #: messages the peer confirmed (or said it had)
        self.sent_bytes = 0  #: octets (user data + OVERHEAD each) of every message sent
        self.acked_bytes = 0  #: ... of the messages confirmed
        self.marked_bytes = 0  #: ... of the messages covered by an acknowledgement point
        self.received = 0  #: messages received from the peer in all
        #: Of the messages sent, how many are not on the wire yet (being replayed, or sent
        #: while the connection was down): an acknowledgement point does not cover them.
        self.queued = 0
        #: When the oldest message not yet covered by an acknowledgement point was sent
        #: (None: every message sent is covered).  Set by the binding (it has the clock).
        self.since: float | None = None
        #: Acknowledgement points in flight on this transport connection: (serial, messages
        #: sent before it, expedited messages sent before it), oldest first.
        self._marks: collections.deque[tuple[int, int, int]] = collections.deque()
        self.replayed_messages = 0  #: by the last resume
        self.replayed_bytes = 0
        #: (Made on first use) S-EXPEDITED-DATA sent and not confirmed, and its counts.
        self.expedited: Expedited | None = None
        #: (Made on first use) Confirmed requests, exactly once across resumes.
        self.requests: Requests | None = None
        #: A resynchronization, an activity interrupt or discard happened (either side's):
        #: the machine throws away answers that cross one (X.225 STA05A-C), so the request
        #: counts of the two sides no longer match; from then on a resume makes no answer
        #: up, and the requests in flight are made again (the peer may see one twice).
        self.skewed = False
        #: The session's functional units, as agreed when it was opened (set by the binding:
        #: what may be kept while a resume try has agreed none yet).
        self.units = 0

    # ------------------------------------------------------------ sending

    def append(self, data: bytes) -> None:
        """One message sent (or queued while the connection is down): S-DATA, or
        S-TYPED-DATA as :class:`Typed`."""
        self.items.append(data)
        self.sent += 1
        self.sent_bytes += len(data) + OVERHEAD

    @property
    def size(self) -> int:
        """Octets held (user data + OVERHEAD per message)."""
        return self.sent_bytes - self.acked_bytes

    @property
    def unmarked(self) -> int:
        """Octets sent since the last acknowledgement point."""
        return self.sent_bytes - self.marked_bytes

    @property
    def full(self) -> bool:
        """As much is held as the limit allows: the sender waits (or the session ends)."""
        return self.sent_bytes - self.acked_bytes >= self.limit

    @property
    def held(self) -> int:
        """Messages held (sent, not confirmed)."""
        return len(self.items)

    def want_ack(self, now: float, ack_bytes: int, ack_interval: float) -> bool:
        """An acknowledgement point is due (enough octets, or the oldest waited long enough)."""
        unmarked = self.sent_bytes - self.marked_bytes
        if unmarked <= 0 and not self._expedited_unmarked():
            return False
        if unmarked >= ack_bytes:
            return True
        return self.since is not None and now >= self.since + ack_interval

    def ack_deadline(self, ack_interval: float) -> float | None:
        if self.since is None or (
            self.sent_bytes <= self.marked_bytes and not self._expedited_unmarked()
        ):
            return None
        return self.since + ack_interval

    def _expedited_unmarked(self) -> bool:
        """Expedited messages on the wire that no acknowledgement point covers yet."""
        ex = self.expedited
        return ex is not None and ex.sent - ex.queued > ex.marked

    def mark(self, serial: int) -> None:
        """An acknowledgement point (MIP ``serial``) went out after every message sent."""
        ex = self.expedited
        exp = 0 if ex is None else ex.sent - ex.queued
        self._marks.append((serial, self.sent - self.queued, exp))
        self.marked_bytes = self.sent_bytes
        if ex is not None:
            ex.marked = exp
        self.since = None

    def is_mark(self, serial: int) -> bool:
        return any(mark[0] == serial for mark in self._marks)

    def confirmed(self, serial: int) -> None:
        """The peer confirmed every sync point up to ``serial`` (MIA): the messages (and
        expedited messages) sent before the last of our points up to it are dropped."""
        marks = self._marks
        upto = exp = None
        while marks and _not_after(marks[0][0], serial):
            _, upto, exp = marks.popleft()
        if upto is not None:
            self._drop(upto)
        if exp and self.expedited is not None:
            self.expedited.drop(exp)

    def void_marks(self, now: float) -> None:
        """The acknowledgement points in flight were settled without their MIA (this side
        answered the peer's MAP or AE: X.225 [64] sets V(As) = V(Ms)): none of them will
        be confirmed, and what they covered that is still held wants a point of its own
        (``since``: ``now``)."""
        if not self._marks:
            return
        self._marks.clear()
        self.marked_bytes = self.acked_bytes
        if self.sent_bytes > self.acked_bytes and self.since is None:
            self.since = now

    def _drop(self, upto: int) -> None:
        items = self.items
        dropped = 0
        while self.acked < upto and items:
            dropped += len(items.popleft()) + OVERHEAD
            self.acked += 1
        self.acked_bytes += dropped
        if not items:
            self.acked_bytes = self.sent_bytes

    # ------------------------------------------------------------ resuming

    def new_connection(self) -> None:
        """A new transport connection: acknowledgement points of the old one are void."""
        self._marks.clear()
        self.marked_bytes = self.acked_bytes
        if self.expedited is not None:
            self.expedited.marked = self.expedited.acked
        self.since = None

    def replay(self, peer_received: int) -> list[bytes]:
        """The peer has ``peer_received`` of our messages: drop those, return the rest (to
        be sent again, in order).  Raises :class:`RemoteError` when the peer claims more
        than was sent, or fewer than it confirmed."""
        if peer_received > self.sent:
            raise RemoteError(
                f"the peer says it received {peer_received} messages; {self.sent} were sent"
            )
        if peer_received < self.acked:
            raise RemoteError(
                f"the peer says it received {peer_received} messages but had confirmed"
                f" {self.acked}"
            )
        self._drop(peer_received)
        out = list(self.items)
        self.queued = len(out)
        self.replayed_messages = len(out)
        self.replayed_bytes = sum(map(len, out))
        return out

    def restart(self) -> None:
        """Both sides went back to a checkpoint: everything held is void, counts restart."""
        self.items.clear()
        self._marks.clear()
        self.sent = self.acked = self.received = self.queued = 0
        self.sent_bytes = self.acked_bytes = self.marked_bytes = 0
        self.since = None
        self.expedited = None
        self.requests = None
        self.skewed = False  # (the request counts start again with everything else)

    # ------------------------------------------------------------ the smaller parts

    def more_expedited(self) -> Expedited:
        """The expedited part, made now if there is none."""
        ex = self.expedited
        if ex is None:
            ex = self.expedited = Expedited()
        return ex

    def more_requests(self) -> Requests:
        """The confirmed requests' part, made now if there is none."""
        requests = self.requests
        if requests is None:
            requests = self.requests = Requests()
        return requests

    def counts(self) -> Counts:
        """What a resume's hello (or welcome) says besides ``recv`` (its ``ct``): the
        answers this side got to its confirmed requests, the peer's it answered (see
        :meth:`Requests.counts`), and the expedited messages it received.  Once
        :attr:`skewed`, the first two are None: they no longer tell anything."""
        ex = self.expedited
        requests = self.requests
        received = 0 if ex is None else ex.received
        if self.skewed:
            return None, None, received
        confirmed, answered = (0, 0) if requests is None else requests.counts()
        return confirmed, answered, received

    def peer_counts(self, counts: Counts | None) -> None:
        """(A resume) What the peer's hello (or welcome) said besides ``recv`` (None: a
        peer that does not say, an earlier sessionlayer: no answer is made up, and the
        expedited messages it may lack are sent again, those sent before the connection
        was lost dropped, since what it has of them is unknown).  Request counts that are
        None (the peer's are skewed), or ours skewed: no answer is made up either."""
        if self.requests is not None:  # (none: nothing asked, nothing answered)
            asked = None
            if counts is not None and counts[0] is not None and counts[1] is not None:
                asked = None if self.skewed else (counts[0], counts[1])
            self.requests.peer_counts(asked)
        ex = self.expedited
        if ex is not None:
            ex.peer_received = None if counts is None else counts[2]
            if counts is None:  # (those not on the wire yet go after the resume)
                ex.drop(ex.sent - ex.queued)


class Expedited:
    """This side's S-EXPEDITED-DATA: sent and not confirmed (their own count: expedited
    data may overtake normal data), and the count received."""

    __slots__ = ("acked", "items", "marked", "peer_received", "queued", "received", "sent")

    def __init__(self) -> None:
        #: Sent, not confirmed (the first is number ``acked + 1``): at most MAX_EXPEDITED.
        self.items: collections.deque[bytes] = collections.deque()
        self.sent = 0  #: expedited messages sent in all
        self.acked = 0  #: ... confirmed by the peer (or said to be there at a resume)
        self.marked = 0  #: ... covered by the last acknowledgement point
        self.queued = 0  #: ... not on the wire yet (being replayed, or sent while detached)
        self.received = 0  #: expedited messages received from the peer in all
        #: (A resume) How many of ours the peer said it received (None: it does not count).
        self.peer_received: int | None = None

    @property
    def full(self) -> bool:
        """As many wait unconfirmed as may: the sender waits."""
        return len(self.items) >= MAX_EXPEDITED

    def append(self, data: bytes) -> None:
        self.items.append(data)
        self.sent += 1

    def drop(self, upto: int) -> None:
        items = self.items
        while self.acked < upto and items:
            items.popleft()
            self.acked += 1
        if not items:
            self.acked = self.sent

    def replay(self) -> list[bytes]:
        """(A resume) Drop what the peer said it has; the rest, to be sent again in order.
        (A count past what was sent is taken as all of it: the data count, checked by
        ``Journal.replay``, is what tells a broken peer.)"""
        peer = self.peer_received
        self.peer_received = None
        if peer is not None:
            self.drop(min(peer, self.sent))
        out = list(self.items)
        self.queued = len(out)
        return out


class Asked:
    """One of this side's confirmed requests, from when it went out until its answer came
    (or a resume showed that the peer had given it: :meth:`Requests.peer_counts`)."""

    __slots__ = ("answer", "kind", "lost", "out", "settled")

    def __init__(self, kind: str, answer: Event | None) -> None:
        self.kind = kind
        #: The confirm the peer's agent gives it (None for the kinds in AGAIN).
        self.answer = answer
        #: That confirm, once a resume showed that the peer had given it and it was lost.
        self.settled: Event | None = None
        #: (AGAIN) The peer answered it and the answer was lost: it is made again.
        self.lost = False
        #: It went out on the current transport connection (else it waits to be made again).
        self.out = True


class Indicated:
    """One of the peer's confirmed requests this side's application was told of."""

    __slots__ = ("answered", "key", "orphan", "reply")

    def __init__(self, key: tuple[str, bytes]) -> None:
        self.key = key  #: its kind and a digest of what it carried
        self.answered = False  #: it was answered (by the agent, or the application)
        self.reply: bytes | None = None  #: (capability data) the answer's user data
        #: Made no more by the peer after a resume while its answer was due: answering it
        #: later counts for nothing (no confirm of it can reach the peer).
        self.orphan = False


def request_key(kind: str, data: bytes | None, extra: int = 0) -> tuple[str, bytes]:
    """What identifies a request made again: its kind, its user data (a digest: the
    record stays small whatever the peer sends) and ``extra`` (a resync's type)."""
    if data is None:
        return kind, b"%d" % extra
    return kind, hashlib.blake2b(b"%d:" % extra + data, digest_size=16).digest()


class Requests:
    """Confirmed requests (sync points, activity ends, capability data, resyncs,
    S-CONTROL-GIVE) exactly once across resumes.

    As requester this side keeps its requests not answered yet (:class:`Asked`, in the
    order they went out) and ``confirmed``, how many answers it got.  As the peer's
    responder it keeps ``answered``, how many of the peer's requests it answered, and the
    last of them it told its application of (:class:`Indicated`).  The hello and the welcome
    of a resume carry both counts (:meth:`counts`).  Then, for each side's requests:

    * the peer answered ``peer_answered - confirmed`` of them whose answer was lost: the
      oldest ones not answered (answers come in order).  Those whose answer carries
      nothing the peer's application chose get it made up here, as the peer's agent gave
      it (``Asked.settled``): they are not made again.  The others (:data:`AGAIN`) are made
      again, and the peer answers them without telling its application;
    * a request the peer told its application of and had not answered when it sent its
      counts (its application was still making a checkpoint durable) is made again too;
      the peer answers it once its application has, and tells nobody again;
    * anything else not answered is made again, as before: the peer never had it.

    Memory: the requests in flight (a few), one record of the peer's, two counts.
    """

    __slots__ = ("answered", "asked", "confirmed", "ended_activity", "expected", "last",
                 "pending", "settled", "told")  # fmt: skip

    def __init__(self) -> None:
        #: This side's requests not answered yet, in the order they went out.
        self.asked: collections.deque[Asked] = collections.deque()
        self.confirmed = 0  #: answers this side got to its requests (made up ones too)
        self.answered = 0  #: the peer's requests this side answered (each once)
        self.last: Indicated | None = None  #: the last of the peer's requests told
        #: The peer's request whose answer is the application's, not given yet (at most
        #: one: only a checkpoint waits so, and it holds the peer's flow until answered).
        self.pending: Indicated | None = None
        #: The peer's request expected again (made again after the resume), if any: the
        #: first confirmed request that comes is it, or none comes.
        self.expected: Indicated | None = None
        #: What the peer was told by :meth:`counts` (last, whether it was answered then,
        #: ``answered`` then).
        self.told: tuple[Indicated | None, bool, int] | None = None
        #: Made up at the last resume, for the binding to apply (``take_settled``).
        self.settled: list[Asked] | None = None
        #: A made-up answer at the last resume ended the activity in progress.
        self.ended_activity = False

    # ------------------------------------------------------------ this side asks

    def ask(self, kind: str, answer: Event | None) -> Asked:
        """A request of ``kind`` went out; ``answer`` is the confirm the peer's agent would
        give it (None for the kinds in AGAIN)."""
        asked = Asked(kind, answer if kind not in AGAIN else None)
        self.asked.append(asked)
        return asked

    def again(self, asked: Asked) -> None:
        """``asked`` went out again (on a new transport connection): last in line."""
        with contextlib.suppress(ValueError):
            self.asked.remove(asked)
        asked.out = True
        self.asked.append(asked)

    def forget(self, asked: Asked) -> None:
        """``asked`` will not be made again (it cannot be, or it failed before it went
        out): no answer is waited for.  One the peer had answered counts as answered."""
        if asked in self.asked:
            self.asked.remove(asked)
            if asked.lost:
                self.confirmed += 1

    def got(self, kind: str) -> None:
        """The peer's answer to our oldest request of ``kind`` on this connection came."""
        self.confirmed += 1
        for asked in self.asked:
            if asked.kind == kind and asked.out:
                self.asked.remove(asked)
                return

    def purge(self, kinds: frozenset[str] = _PURGED) -> None:
        """The requests of ``kinds`` (sync points) in flight were purged: no answer comes."""
        if any(a.kind in kinds for a in self.asked):
            self.asked = collections.deque(a for a in self.asked if a.kind not in kinds)

    def waiting(self, kind: str) -> bool:
        """A request of ``kind`` is out on this connection, not answered yet."""
        return any(a.kind == kind and a.out for a in self.asked)

    # ------------------------------------------------------------ the peer asks

    def indicated(self, key: tuple[str, bytes]) -> Indicated | None:
        """One of the peer's confirmed requests came: None if it is new (it is recorded:
        the application is told, and :meth:`answer` follows once it is answered), else the
        record of the one it makes again (answer it again; the application was told)."""
        expected = self.expected
        if expected is not None:
            self.expected = None  # (the first request that comes after the resume settles it)
            if expected.key == key:
                return expected
            if not expected.answered:
                expected.orphan = True  # the peer did not make it again
        self.last = Indicated(key)
        return None

    def answer(self, reply: bytes | None = None) -> None:
        """The last of the peer's requests was answered at once (``reply``: a capability
        data's)."""
        self._answered(self.last, reply)

    def defer(self) -> None:
        """The last of the peer's requests waits for the application's answer (a
        checkpoint made durable first): :meth:`answer_pending` follows."""
        self.pending = self.last

    def answer_pending(self) -> None:
        """The application answered the request :meth:`defer` left to it."""
        pending, self.pending = self.pending, None
        self._answered(pending, None)

    def _answered(self, record: Indicated | None, reply: bytes | None) -> None:
        if record is not None and not record.answered:
            record.answered = True
            record.reply = reply
            if not record.orphan:
                self.answered += 1

    # ------------------------------------------------------------ resuming

    def counts(self) -> tuple[int, int]:
        """(confirmed, answered) for a resume's hello or welcome."""
        last = self.last
        self.told = (last, last is not None and last.answered, self.answered)
        return self.confirmed, self.answered

    def peer_counts(self, counts: tuple[int, int] | None) -> None:
        """The peer's (confirmed, answered) at a resume (None: it does not say)."""
        told = self.told
        if told is None:
            last = self.last
            told = (last, last is not None and last.answered, self.answered)
        self.told = None
        last, was_answered, answered = told
        # The peer's request expected again:
        expected = None
        if last is not None and not last.orphan:
            if not was_answered:
                expected = last  # (it cannot have our answer)
            elif counts is not None and last.key[0] in AGAIN and answered - counts[0] >= 1:
                expected = last  # our answer to it was lost, and it makes it again
        self.expected = expected
        # Ours:
        self.ended_activity = False
        lost = 0 if counts is None else counts[1] - self.confirmed
        settled: list[Asked] = []
        for asked in list(self.asked):
            asked.out = False  # (made again once this connection resumed, unless settled)
            if lost <= 0:
                continue
            lost -= 1
            if asked.answer is None:
                asked.lost = True  # made again, answered again
                continue
            self.asked.remove(asked)
            self.confirmed += 1
            asked.settled = asked.answer
            settled.append(asked)
            if asked.kind in ENDS:
                self.ended_activity = True
        if settled:  # (added to those of a try whose resume went no further)
            self.settled = (self.settled or []) + settled

    def take_settled(self) -> list[Asked]:
        """The requests the last resume made the answers of up (once)."""
        settled, self.settled = self.settled, None
        return settled or []


def _not_after(a: int, b: int) -> bool:
    """Serial ``a`` comes no later than ``b`` (X.225 serial numbers: modulo 10**6)."""
    return (b - a) % 1_000_000 < 500_000
