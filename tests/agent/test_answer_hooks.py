"""The agent's hooks for a user that answers for itself (the relay): ``auto_answer=False``
leaves every indication that needs an answer to that user, and ``accept(config=...)``
answers a CN with another configuration than the one the agent was made with."""

from __future__ import annotations

from tests.agent.test_agent import AgentPair

from sessionlayer import FunctionalUnit as FU
from sessionlayer.machine import SessionConfig
from sessionlayer.machine import events as ev
from sessionlayer.spdu.codes import Token, TokenSetting, Version
from sessionlayer.spdu.types import ConnectionId

UNITS = FU.HALF_DUPLEX | FU.MINOR_SYNC | FU.MAJOR_SYNC | FU.RESYNC | FU.NEGOTIATED_RELEASE


def opened(units: FU = UNITS) -> AgentPair:
    pair = AgentPair(units)
    pair.server.auto_answer = False
    pair.open(hello=None)
    return pair


def test_the_default_answers_everything() -> None:
    assert AgentPair().server.auto_answer is True
    assert AgentPair().server.rare is None  # (the default costs an idle agent nothing)


def test_nothing_is_answered_and_every_indication_is_kept() -> None:
    pair = opened()
    client = pair.client.machine
    serial = client.minor_sync(confirm=True)
    pair.pump()
    assert pair.kinds("server")[-1] == "MinorSyncIndication"
    assert "MinorSyncConfirm" not in pair.kinds("client")  # no MIA went out
    pair.server.machine.minor_sync_response(serial)  # the user answers, when it likes
    pair.pump()
    assert pair.kinds("client")[-1] == "MinorSyncConfirm"
    client.major_sync()
    pair.pump()
    assert pair.kinds("server")[-1] == "MajorSyncIndication"
    assert pair.server.machine.state == "STA10A"  # still waiting for its user
    pair.server.machine.major_sync_response()
    pair.pump()
    assert pair.kinds("client")[-1] == "MajorSyncConfirm"


def test_token_requests_are_left_to_the_user() -> None:
    pair = opened()
    pair.client.machine.give_tokens(Token.DATA)
    pair.pump()
    pair.client.machine.please_tokens(Token.DATA)
    pair.pump()
    assert isinstance(pair.take("server", ev.TokenPleaseIndication), ev.TokenPleaseIndication)
    assert pair.server.machine.tokens_owned & Token.DATA  # not given back on its own


def test_a_release_is_left_unanswered_and_released_follows_the_confirm() -> None:
    pair = opened(FU.DUPLEX)
    pair.client.auto_answer = False
    pair.client.machine.release(b"fn")
    pair.pump()
    assert pair.take("server", ev.ReleaseIndication).user_data == b"fn"
    assert pair.server.machine.state == "STA09"  # waiting for its user's response
    pair.server.machine.release_response(accept=True, user_data=b"dn", now=pair.now)
    pair.pump()
    assert pair.take("client", ev.ReleaseConfirm).user_data == b"dn"
    assert pair.client.released


def test_accept_with_another_configuration() -> None:
    cfg = SessionConfig(functional_units=UNITS, token_setting={
        Token.DATA: TokenSetting.CALLED_CHOICE})  # fmt: skip
    pair = AgentPair(UNITS)
    pair.client = type(pair.client)("initiator", cfg, pair.client.options)
    pair.client.connection_made(pair.now)
    pair.pump()
    pair.client.connect(b"cn", ConnectionId())
    pair.pump()
    pair.take("server", ev.ConnectIndication)
    answer = SessionConfig(
        functional_units=FU.HALF_DUPLEX | FU.MAJOR_SYNC, versions=Version.V1,
        initial_serial=42, responding_ssel=b"\x00\x05",
        called_choice={Token.DATA: TokenSetting.RESPONDER},
    )  # fmt: skip
    pair.server.accept(chosen={}, session_id="x" * 32, user_data=b"ac", config=answer)
    pair.pump()
    ac = pair.take("client", ev.ConnectConfirm)
    assert ac.functional_units == FU.HALF_DUPLEX | FU.MAJOR_SYNC
    assert (ac.version, ac.initial_serial, ac.responding_ssel) == (1, 42, b"\x00\x05")
    assert pair.server.machine.tokens_owned & Token.DATA  # the called choice, as told
    assert pair.server.machine.config is answer
