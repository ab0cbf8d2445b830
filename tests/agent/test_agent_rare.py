"""What only some agents need is made on first use: defaults read back as before."""

from __future__ import annotations

from sessionlayer.agent import SessionAgent
from sessionlayer.spdu.codes import Token


def test_rare_fields_default_and_round_trip() -> None:
    agent = SessionAgent("responder")
    assert agent.on_release is None and agent.on_capability_data is None
    assert agent.link_lost is None and agent.last_sync is None
    assert agent.warnings() == []
    agent.on_release = None  # setting a default makes nothing
    agent.last_sync = None
    assert agent.rare is None

    def answer(event: object) -> bool:
        return True

    agent.on_release = answer
    agent.last_sync = 7
    agent.link_lost = "gone"
    agent._warn("look")
    assert agent.on_release is answer and agent.last_sync == 7 and agent.link_lost == "gone"
    assert agent.warnings() == ["look"] and agent.warnings() == []
    assert agent._owed == Token(0) and agent._asked == Token(0)


def test_an_idle_session_keeps_no_rare_parts_and_no_transport_readers() -> None:
    """Two agents open a duplex session and exchange data: the server's machine has made
    no rare part (activities, resync, overflow, TSDU sizes stay defaults), and once the
    binding's fast path would take over (``compact``) RFC 1006 holds no readers; the next
    read makes them again and reads on."""
    from tests.agent.test_agent import AgentPair

    pair = AgentPair()
    pair.open()
    server = pair.server
    assert server.machine.rare is None and server.rare is None
    assert server.machine._vact is False and server.machine._tsdu_send == 0
    server.rfc.compact()
    assert server.rfc._parser is None and server.rfc.idle
    assert server.rfc.hand_over() == b""  # (nothing held)
    pair.client.call(lambda m: m.send_data(b"after"))
    pair.pump()
    assert [type(e).__name__ for e in pair.events["server"]][-1] == "DataIndication"
    assert server.rfc._parser is not None  # made again by that read


def test_a_rare_machine_field_makes_the_rare_part_and_reads_back() -> None:
    from sessionlayer.machine import SessionMachine

    machine = SessionMachine("initiator")
    assert machine.rare is None and machine._ado == -1 and machine._resync is None
    machine._ado = -1  # a default: nothing is made
    assert machine.rare is None
    machine._ado = 5
    assert machine.rare is not None and machine._ado == 5 and machine._adi == -1
