"""Two session machines wired back to back through an in-memory link (h11 ConnectionPair)."""

from __future__ import annotations

from sessionlayer.machine import (
    ALL_FUNCTIONAL_UNITS,
    ConnectConfirm,
    ConnectIndication,
    Event,
    SessionConfig,
    SessionMachine,
)
from sessionlayer.spdu import SPDU, FunctionalUnit, Token, decode_tsdu

#: Half-duplex and everything but activity management (with it, data flows only inside an
#: activity) and capability data.
BASIC = ALL_FUNCTIONAL_UNITS & ~FunctionalUnit.ACTIVITY & ~FunctionalUnit.CAPABILITY_DATA


class SessionPair:
    """An initiator and a responder; ``pump()`` carries TSDUs until both are quiet."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        responder_config: SessionConfig | None = None,
    ) -> None:
        self.init = SessionMachine("initiator", config or SessionConfig())
        self.resp = SessionMachine("responder", responder_config or config or SessionConfig())
        self.wire: list[tuple[str, bytes]] = []  # everything carried, for inspection
        self.now = 0.0  # the clock both machines are told (tests move it)

    def other(self, m: SessionMachine) -> SessionMachine:
        return self.resp if m is self.init else self.init

    def pump(self) -> dict[str, list[Event]]:
        """Deliver queued TSDUs both ways until none is left; return each side's events."""
        got: dict[str, list[Event]] = {"init": [], "resp": []}
        while True:
            moved = False
            for src, dst, name in ((self.init, self.resp, "i->r"), (self.resp, self.init, "r->i")):
                for tsdu in src.expedited_to_send() + src.data_to_send():
                    self.wire.append((name, tsdu))
                    dst.receive_tsdu(tsdu, now=self.now)
                    moved = True
            got["init"] += self.init.events()
            got["resp"] += self.resp.events()
            if not moved:
                return got

    def connect(self, user_data: bytes | None = b"hello", **accept: object) -> None:
        self.init.transport_connected()
        self.resp.transport_connected()
        self.init.connect(user_data=user_data)
        ev = self.pump()
        assert isinstance(ev["resp"][0], ConnectIndication)
        self.resp.accept(**accept)  # type: ignore[arg-type]
        ev = self.pump()
        assert isinstance(ev["init"][0], ConnectConfirm), ev
        assert self.init.state == self.resp.state == "STA713"


def decode(tsdu: bytes) -> tuple[SPDU, ...]:
    return decode_tsdu(tsdu)


def kinds(tsdu: bytes) -> list[str]:
    return [s.kind for s in decode_tsdu(tsdu)]


# ---------------------------------------------------------------- states to reach


def sta19(p: SessionPair) -> None:
    """The initiator in STA19 (waiting for the recovery after the responder's EXCEPTION
    REPORT): the responder lacks the data token and reports."""
    p.resp.exception_report(3)
    p.pump()


def sta20(p: SessionPair) -> None:
    """The initiator in STA20 (waiting for the recovery after its own EXCEPTION REPORT,
    without the data token)."""
    p.init.give_tokens(Token.DATA)
    p.pump()
    p.init.exception_report(3)


def pair(**kw: object) -> SessionPair:
    """Two machines in data transfer (STA713), with ``BASIC`` units unless told."""
    kw.setdefault("functional_units", BASIC)
    p = SessionPair(SessionConfig(**kw))  # type: ignore[arg-type]
    p.connect()
    return p
