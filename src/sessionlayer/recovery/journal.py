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
"""

from __future__ import annotations

import collections

from ..errors import RemoteError

__all__ = ["Journal", "Typed", "ACK_MARK", "OVERHEAD"]

#: The user data of the minor sync points the agent sets to acknowledge data: the peer's
#: agent answers them and neither application sees them.
ACK_MARK = b"SLK1"
#: What one retained message costs beyond its octets (the bytes object and its deque slot),
#: counted against the limit so that many small messages are bounded too.
OVERHEAD = 64


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

    __slots__ = ("_marks", "acked", "acked_bytes", "items", "limit", "marked_bytes", "queued",
                 "received", "replayed_bytes", "replayed_messages", "sent", "sent_bytes",
                 "since")  # fmt: skip

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
        #: sent before it, their octets), oldest first.
        self._marks: collections.deque[tuple[int, int]] = collections.deque()
        self.replayed_messages = 0  #: by the last resume
        self.replayed_bytes = 0

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
        if unmarked <= 0:
            return False
        if unmarked >= ack_bytes:
            return True
        return self.since is not None and now >= self.since + ack_interval

    def ack_deadline(self, ack_interval: float) -> float | None:
        if self.since is None or self.sent_bytes <= self.marked_bytes:
            return None
        return self.since + ack_interval

    def mark(self, serial: int) -> None:
        """An acknowledgement point (MIP ``serial``) went out after every message sent."""
        self._marks.append((serial, self.sent - self.queued))
        self.marked_bytes = self.sent_bytes
        self.since = None

    def is_mark(self, serial: int) -> bool:
        return any(s == serial for s, _ in self._marks)

    def confirmed(self, serial: int) -> None:
        """The peer confirmed every sync point up to ``serial`` (MIA): the messages sent
        before the last of our points up to it are dropped."""
        marks = self._marks
        upto = None
        while marks and _not_after(marks[0][0], serial):
            upto = marks.popleft()[1]
        if upto is not None:
            self._drop(upto)

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


def _not_after(a: int, b: int) -> bool:
    """Serial ``a`` comes no later than ``b`` (X.225 serial numbers: modulo 10**6)."""
    return (b - a) % 1_000_000 < 500_000
