"""What only some agents need is made on first use: defaults read back as before."""

from __future__ import annotations

from sessionlayer.agent import SessionAgent
from sessionlayer.spdu.codes import Token


def test_rare_fields_default_and_round_trip() -> None:
    agent = SessionAgent("responder")
    assert agent.on_release is None and agent.on_capability_data is None
    assert agent.session_id is None and agent.last_sync is None
    assert agent.warnings() == []
    agent.on_release = None  # setting a default makes nothing
    agent.last_sync = None
    assert agent.rare is None

    def answer(event: object) -> bool:
        return True

    agent.on_release = answer
    agent.last_sync = 7
    agent.session_id = "ab"
    agent._warn("look")
    assert agent.on_release is answer and agent.last_sync == 7 and agent.session_id == "ab"
    assert agent.warnings() == ["look"] and agent.warnings() == []
    assert agent._owed == Token(0) and agent._asked == Token(0)
