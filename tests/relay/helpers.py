"""Shared by the relay tests: a client agent, a :class:`Bridge` and an upstream agent joined
by in-memory byte pipes (no sockets, the time kept by the test), and wire helpers."""

from __future__ import annotations

from typing import Any

import sessionlayer
from sessionlayer import FunctionalUnit
from sessionlayer.agent import Options, SessionAgent
from sessionlayer.errors import DecodeError
from sessionlayer.machine import SessionConfig
from sessionlayer.machine import events as ev
from sessionlayer.relay import Bridge, RelayOptions
from sessionlayer.spdu import SPDU, decode_tsdu
from sessionlayer.spdu.types import ConnectionId
from sessionlayer.transport import Data, TpktParser, TsduAssembler, decode_tpdu

__all__ = ["Through", "spdus_in", "OPTS", "run"]

OPTS = Options(keepalive_interval=None, idle_timeout=None, resume=False)


def spdus_in(octets: bytes) -> list[SPDU]:
    """Every SPDU in a TPKT stream (COTP CR/CC and the like are skipped)."""
    parser, assembler, out = TpktParser(), TsduAssembler(1 << 24), []
    for payload in parser.feed(octets):
        tpdu = decode_tpdu(payload)
        if isinstance(tpdu, Data):
            tsdu = assembler.feed(tpdu)
            if tsdu is not None:
                try:
                    out += decode_tsdu(tsdu, extended=True)
                except DecodeError:
                    out.append(None)  # type: ignore[arg-type]
    return out


class Through:
    """client agent <-> Bridge <-> upstream agent, through byte pipes.

    ``client_config`` / ``upstream_config`` are the end peers' own (default: duplex only);
    the relay's come from the bridge.  ``wire[leg]`` keeps every octet the relay wrote on
    that leg, and ``received[leg]`` what it read.
    """

    def __init__(self, client_config: SessionConfig | None = None,
                 upstream_config: SessionConfig | None = None,
                 options: RelayOptions | None = None, admit: Any = None,
                 accept_data: bytes | None = b"ac-data") -> None:  # fmt: skip
        self.now = 1000.0
        duplex = SessionConfig(functional_units=FunctionalUnit.DUPLEX)
        self.client = SessionAgent("initiator", client_config or duplex, OPTS)
        self.upstream = SessionAgent("responder", upstream_config or duplex, OPTS)
        self.bridge = Bridge("ab" * 16, options, admit=admit)
        self.accept_data = accept_data
        self.auto_accept = True
        self.upstream_up = False
        self.wire: dict[str, bytes] = {"client": b"", "upstream": b""}
        self.received: dict[str, bytes] = {"client": b"", "upstream": b""}
        self.events: dict[str, list[ev.Event]] = {"client": [], "upstream": []}
        self.client.connection_made(self.now)
        self.bridge.client_connected(self.now)

    def pump(self) -> None:
        """Move octets until every side is quiet."""
        moved = True
        bridge = self.bridge
        while moved:
            moved = False
            for data in self.client.data_to_send():
                moved = True
                self.received["client"] += data
                bridge.receive("client", data, self.now)
            for data in bridge.data_to_send("client"):
                moved = True
                self.wire["client"] += data
                self.client.receive_data(data, self.now)
            if bridge.take_connect():
                moved = True
                self.upstream.connection_made(self.now)
                self.upstream_up = True
                bridge.upstream_connected(self.now)
            for data in bridge.data_to_send("upstream"):
                moved = True
                self.wire["upstream"] += data
                self.upstream.receive_data(data, self.now)
            for data in self.upstream.data_to_send():
                moved = True
                self.received["upstream"] += data
                bridge.receive("upstream", data, self.now)
            for event in self.upstream.events():
                moved = True
                self.events["upstream"].append(event)
                if isinstance(event, ev.ConnectIndication) and self.auto_accept:
                    self.upstream.accept(chosen={}, session_id="cd" * 16,
                                         user_data=self.accept_data)  # fmt: skip
            self.events["client"] += self.client.events()

    def open(self, user_data: bytes | None = b"cn-data",
             connection_id: ConnectionId | None = None) -> None:
        self.pump()  # CR / CC
        self.client.connect(user_data, connection_id or ConnectionId(calling_ref=b"ref"))
        self.pump()

    def kinds(self, side: str) -> list[str]:
        return [type(e).__name__ for e in self.events[side]]

    def take(self, side: str, kind: type) -> Any:
        found = [e for e in self.events[side] if isinstance(e, kind)]
        assert found, f"no {kind.__name__} at the {side}: {self.kinds(side)}"
        self.events[side].remove(found[0])
        return found[0]

    def later(self, seconds: float) -> None:
        """Let time pass: every timer that is due fires."""
        self.now += seconds
        self.bridge.handle_timer(self.now)
        self.client.handle_timer(self.now)
        self.upstream.handle_timer(self.now)
        self.pump()

    def close_transport(self, leg: str) -> None:
        """One leg's TCP goes away (both ends are told)."""
        if leg == "client":
            self.client.connection_lost()
        else:
            self.upstream.connection_lost()
        self.bridge.lost(leg, self.now)  # type: ignore[arg-type]
        self.pump()


def run(coro: Any, timeout: float = 30.0, loop: str = "asyncio") -> Any:
    """``asyncio.run`` with a deadline; anything that reaches the loop's exception handler
    fails the test (the relay must catch all it raises).  ``loop="uvloop"`` runs it on
    uvloop (in the test extra: a test that asks for it fails in CI without it)."""
    import asyncio

    reported: list[dict[str, Any]] = []

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))
        return await asyncio.wait_for(coro, timeout)

    from tests.tools import loop_factory

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        result = runner.run(main())
    assert not reported, f"reached asyncio's exception handler: {reported}"
    return result


#: An upstream's options and configuration for the relay's limit tests (plain sessions).
PLAIN = sessionlayer.Options(keepalive_interval=None, idle_timeout=None, resume=False)
CONFIG = SessionConfig.kernel_duplex()


def upstream() -> Any:
    """An echo upstream (``serve()``'s awaitable) that answers every connect with b"ok"."""
    from tests.tools import echo

    return sessionlayer.serve(echo, config=CONFIG, options=PLAIN,
                              accept_data=lambda request: b"ok")  # fmt: skip
