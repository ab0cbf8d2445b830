"""The durable record of one session and the interface every session store implements."""

from __future__ import annotations

import builtins
import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..recovery.events import Checkpoint

__all__ = ["Checkpoint", "SessionRecord", "SessionStore", "KEEP", "Keep"]

_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class SessionRecord:
    """What a store keeps of one session so that it survives a lost connection or a
    server restart."""

    id: str
    """The session id the server gave it: 32 lowercase hex digits (16 random octets)."""

    generation: int
    """The resume-token generation: 0 when accepted, one more on each resume."""

    identity: str
    """Who authenticated it: ``"cred:hmac:<hex>"`` (the credentials) or
    ``"cert:hmac:<hex>"`` (the client certificate), HMAC-SHA256 keyed with the server
    secret (:meth:`SessionStore.secret`), or ``"anon"``.  (Records of older versions hold
    the unkeyed SHA-256, ``"cred:<hex>"``, ``"cert:<hex>"``, which are still honoured.)"""

    chosen: dict[str, str]
    """The application parameters agreed at connect."""

    created: float
    """When it was accepted (wall clock, :func:`time.time`)."""

    expires_at: float | None
    """When the record may be removed (wall clock; :meth:`SessionStore.expire`).  While
    detached (its connection lost): the deadline for a resume.  While attached: the end
    of the lease of the node holding it, which that node renews (:meth:`SessionStore.renew`)
    while it runs, so that the records of a node that died go too.  None: never (a record
    written without a lease)."""

    checkpoint: Checkpoint | None = None
    """The last confirmed major sync point, if any."""

    node: str | None = None
    """Which server node holds it live (None: none does)."""

    peer: str | None = None
    """Where the peer connected from, for listings (``"127.0.0.1:5555"``)."""

    detached: bool = False
    """Its connection is lost and ``expires_at`` is the deadline for a resume, not a lease:
    :meth:`SessionStore.renew` leaves it alone (a renewal that was on its way when the
    session detached never extends the deadline); :meth:`SessionStore.advance` (a resume)
    makes it False again."""

    heard_at: int | None = None
    """The generation the client was last heard at, when it was not heard since the last
    resume: the tokens from that generation up to the current one are all taken (the
    accepts of the resumes since, each carrying the next token, may all have been lost on
    the way, on as many nodes).  None: only the current token is taken (the client was
    heard at this generation).  :meth:`SessionStore.advance` (a resume) keeps it, or sets
    it to the generation it advances from; the node holding the record sets it to None
    (:meth:`SessionStore.update`, conditional on its generation and node) once it hears the
    client on the connection it resumed.  Records of older versions said only
    ``previous_ok`` (the token before is taken too): read as the generation before."""

    @property
    def previous_ok(self) -> bool:
        """Is a token older than the current one taken (:attr:`heard_at` is set)?"""
        return self.heard_at is not None

    @property
    def oldest(self) -> int:
        """The oldest generation whose token is taken: :attr:`heard_at`, else the current
        one."""
        return self.generation if self.heard_at is None else self.heard_at

    def __post_init__(self) -> None:
        if not (isinstance(self.id, str) and _ID.fullmatch(self.id)):
            raise ValueError(f"a session id is 32 lowercase hex digits, not {self.id!r}")
        at = self.expires_at
        if at is not None and (isinstance(at, bool) or not isinstance(at, int | float)
                               or not -math.inf < at < math.inf):  # fmt: skip
            raise ValueError(f"expires_at is a finite time or None, not {at!r}")
        generation, heard = self.generation, self.heard_at
        if type(generation) is not int or generation < 0:
            raise ValueError(f"generation is an integer 0 or more, not {generation!r}")
        if heard is not None and (type(heard) is not int or not 0 <= heard < generation):
            raise ValueError(f"heard_at is None or a generation below {generation}, not"
                             f" {heard!r}")  # fmt: skip

    def held(self, generation: int | None, node: str | None) -> bool:
        """At ``generation`` and held by ``node`` (each when not None): what a conditional
        update or delete asks (``if_generation``, ``if_node``)."""
        return (generation is None or self.generation == generation) and (
            node is None or self.node == node
        )

    def changed(self, expires_at: float | Keep | None, checkpoint: Checkpoint | Keep | None,
                node: str | Keep | None, detached: bool | Keep,
                heard_at: int | Keep | None) -> SessionRecord:  # fmt: skip
        """This record with the fields :meth:`SessionStore.update` was given changed."""
        changes: dict[str, Any] = {}
        if expires_at is not KEEP:
            changes["expires_at"] = expires_at
        if checkpoint is not KEEP:
            changes["checkpoint"] = checkpoint
        if node is not KEEP:
            changes["node"] = node
        if detached is not KEEP:
            changes["detached"] = detached
        if heard_at is not KEEP:
            changes["heard_at"] = heard_at
        return replace(self, **changes) if changes else self

    def advanced(self, node: str | None, expires_at: float | None) -> SessionRecord:
        """This record as :meth:`SessionStore.advance` writes it: the next generation, held
        by ``node`` until ``expires_at``, attached, and the tokens from :attr:`oldest` on
        still taken."""
        return replace(self, generation=self.generation + 1, node=node, expires_at=expires_at,
                       detached=False, heard_at=self.oldest)  # fmt: skip

    def bars(self, record: SessionRecord) -> bool:
        """What :meth:`SessionStore.put_unless_taken` asks of the stored record: does it
        keep ``record`` from being written over it?  Yes if it is at a newer generation, or
        at the same one and held by another node (its ``node`` set, and not
        ``record.node``).  A record at an older generation never bars a newer one: only a
        resume advances a generation, so its node is the one the client's latest token
        names, and a node that wrote its older copy (the record swept meanwhile) is stale."""
        if self.generation != record.generation:
            return self.generation > record.generation
        return self.node not in (None, record.node)

    def renewable(self, node: str) -> bool:
        """What :meth:`SessionStore.renew` renews: held by ``node``, and attached."""
        return self.node == node and not self.detached


class Keep(enum.Enum):
    """The type of :data:`KEEP`."""

    KEEP = "keep"


KEEP = Keep.KEEP
"""Passed to :meth:`SessionStore.update` for a field to leave as it is (its default)."""


class SessionStore(Protocol):
    """Where servers keep their :class:`SessionRecord` values.

    Every method is a coroutine and raises
    :class:`~sessionlayer.errors.StoreUnavailable` when the backend cannot answer (down,
    unreachable, too slow, locked, or the store closed): within a bounded time, never
    hanging; and when a record it holds cannot be read (corrupt), with ``corrupt`` set to
    its session's id (asking again gives the same: a server refuses its resume for good).
    Several servers ("nodes") may share one store; :meth:`advance` is what keeps two of
    them from both resuming one session, and :meth:`put_unless_taken` what keeps a node
    writing a session's record again from overwriting the record of a node that resumed
    it meanwhile.
    """

    name: str
    """What the store is, for logs and errors: ``"memory"``, ``"sqlite:/path"``,
    ``"redis://host:port/db"`` (never a password)."""

    async def secret(self) -> bytes:
        """The 32-octet server secret (the HMAC key of resume tokens and of identities):
        created once, by whichever node asks first, then the same for every node using
        the store.  Kept after the first call: the one :meth:`refresh_secret` last
        agreed on."""
        ...

    async def refresh_secret(self) -> tuple[bytes, ...]:
        """The secrets resume tokens are checked against: the one to sign with
        (:meth:`secret`) first, then the one before it, if any (a token issued with it is
        still good).  Asserted again in the backend on each call (a server calls it every
        ``lease / 3``): a backend that lost its secret (a Redis restarted empty) gets it
        back, and nodes that made different ones meanwhile converge on one (Redis: the one
        made first) within a call each, the other one kept as the one before.  A backend
        that cannot lose its secret (memory, a SQLite file) returns the one it has."""
        ...

    async def put(self, record: SessionRecord) -> None:
        """Insert ``record``, or replace the one with its id."""
        ...

    async def put_unless_taken(self, record: SessionRecord) -> SessionRecord | None:
        """Atomically: write ``record`` whole, as :meth:`put` does, unless the stored record
        with its id is at a greater generation, or at the same one and held by another
        node (its ``node`` set, and not ``record.node``: :meth:`SessionRecord.bars`).  None
        when written; else that stored record, unchanged.  (A node writing again the record
        of a session it holds, missing or not its own to update, never overwrites that of a
        node that resumed the session since; and a stale node that wrote its older copy
        first does not keep the node that holds the session from writing its own.)"""
        ...

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record with this id, or None."""
        ...

    async def advance(
        self, session_id: str, generation: int, *, node: str | None, expires_at: float | None
    ) -> SessionRecord | None:
        """Atomically: if the stored record's generation is ``generation``, store
        ``generation + 1``, ``node`` and ``expires_at``, attached (``detached`` False: a
        resume) with the tokens from its :attr:`~SessionRecord.oldest` generation on still
        taken (``heard_at`` that one, until the node clears it), and return the new record
        (what was written, checked and changed in one atomic step); else (absent, or
        another resume won, or a replayed token) change nothing and return None."""
        ...

    async def update(
        self,
        session_id: str,
        *,
        expires_at: float | Keep | None = KEEP,
        checkpoint: Checkpoint | Keep | None = KEEP,
        node: str | Keep | None = KEEP,
        if_generation: int | None = None,
        if_node: str | None = None,
        detached: bool | Keep = KEEP,
        heard_at: int | Keep | None = KEEP,
    ) -> bool:
        """Change the fields given (the others are kept); False if there is no such
        record.  (A server detaching a session sets ``expires_at`` to its deadline and
        ``detached`` True in one call, so that no lease renewal extends it.)

        ``if_generation``, ``if_node`` (when not None): only if the stored record's
        generation and node are these (a node changes only a record it still holds, at
        the generation it knows); else nothing changes and the result is False.  The check
        and the change are one atomic step."""
        ...

    async def delete(
        self, session_id: str, *, if_generation: int | None = None, if_node: str | None = None
    ) -> bool:
        """Remove the record; False if there was none (or, with ``if_generation`` or
        ``if_node``, if it is not at that generation or held by that node: then it
        stays).  The check and the removal are one atomic step."""
        ...

    async def renew(
        self, node: str, session_ids: Sequence[str], expires_at: float
    ) -> builtins.list[str]:
        """The lease of a live node: set ``expires_at`` of each of these records that
        ``node`` holds attached (its ``node`` field, and ``detached`` False), in one call,
        each checked and changed atomically; return the ids renewed (the others are
        absent, held by another node, or detached, and unchanged: a renewal sent before a
        session detached, and run after its deadline was written, leaves that deadline)."""
        ...

    async def list(self) -> builtins.list[SessionRecord]:
        """Every record, oldest first (by ``created``, then id)."""
        ...

    async def expire(self, now: float) -> builtins.list[str]:
        """Remove every record whose deadline has passed (``expires_at <= now``: a detached
        session's client did not come back, or an attached one's lease ran out) and return
        their ids; records with ``expires_at`` None stay."""
        ...

    async def close(self) -> None:
        """Let go of the backend (connections, files); calls afterwards raise
        :class:`~sessionlayer.errors.StoreUnavailable`.  Closing twice is harmless."""
        ...
