"""What the peer sends is not dropped on the way to the user: the user data of a GIVE
TOKENS (version 2), also when the GT carries a DT; the Data Overflow parameter read by its
defined bit only; and a decoder's own reason code carried into the AB it causes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sessionlayer.errors import DecodeError
from sessionlayer.machine import (
    ConnectIndication,
    DataIndication,
    ParameterError,
    ProviderAbortIndication,
    SessionConfig,
    SessionMachine,
    TokenGiveIndication,
)
from sessionlayer.machine import machine as machine_module
from sessionlayer.machine.core import RESTRICTION
from sessionlayer.spdu import (
    Abort,
    Connect,
    DataTransfer,
    GiveTokens,
    Token,
    Version,
    encode_tsdu,
)

from .helpers import decode, pair


def test_give_tokens_carries_user_data_in_version_2() -> None:
    p = pair()
    p.init.give_tokens(Token.DATA, user_data=b"over to you")
    assert p.pump()["resp"] == [TokenGiveIndication(Token.DATA, b"over to you")]
    assert p.resp.tokens_owned & Token.DATA


def test_give_tokens_with_user_data_is_refused_in_version_1() -> None:
    p = pair(versions=Version.V1)
    with pytest.raises(ParameterError, match="version 1"):
        p.init.give_tokens(Token.DATA, user_data=b"x")
    assert p.init.data_to_send() == [] and p.init.tokens_owned & Token.DATA
    p.init.give_tokens(Token.DATA)  # without user data it still goes
    assert p.pump()["resp"] == [TokenGiveIndication(Token.DATA)]


def test_user_data_of_a_gt_that_carries_a_dt_reaches_the_user() -> None:
    """Before, the GT's user data was dropped on the way to the TokenGiveIndication."""
    p = pair()
    p.init.give_tokens(Token.DATA | Token.MINOR_SYNC)  # the responder gives one back, with a DT
    p.pump()
    gt = GiveTokens(tokens=int(Token.MINOR_SYNC), user_data=b"note")
    p.init.receive_tsdu(encode_tsdu(gt, DataTransfer(user_data=b"data")), now=0.0)
    assert p.init.events() == [
        TokenGiveIndication(Token.MINOR_SYNC, b"note"), DataIndication(b"data")
    ]
    assert p.init.state == "STA713" and p.init.tokens_owned & Token.MINOR_SYNC


@pytest.mark.parametrize("carried", [True, False])
def test_user_data_on_a_gt_of_no_tokens_is_a_protocol_error(carried: bool) -> None:
    """Before, a GT of no tokens with user data was taken for a bare carrier when a DT
    followed it, and its user data was dropped without a word."""
    p = pair()
    spdus = [GiveTokens(user_data=b"note")] + ([DataTransfer(user_data=b"x")] if carried else [])
    p.resp.receive_tsdu(encode_tsdu(*spdus), now=0.0)
    (ev,) = p.resp.events()
    assert isinstance(ev, ProviderAbortIndication) and "user data but no Token" in ev.message
    (ab,) = decode(p.resp.data_to_send()[0])
    assert isinstance(ab, Abort) and ab.transport_disconnect == 0x05
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"more")), now=0.0)
    assert p.resp.events() == []  # aborting: nothing more is delivered


def test_a_bare_carrier_gt_says_nothing() -> None:
    p = pair()
    p.resp.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=b"more")), now=0.0)
    assert p.resp.events() == [DataIndication(b"more")]


def connect_with_overflow_field(value: int, versions: Version) -> SessionMachine:
    m = SessionMachine("responder", SessionConfig(versions=versions))
    m.transport_connected()
    cn = SessionMachine("initiator", SessionConfig(versions=Version.V1 | Version.V2))
    cn.transport_connected()
    cn.connect(user_data=b"hi")
    (tsdu,) = cn.data_to_send()
    (spdu,) = decode(tsdu)
    assert isinstance(spdu, Connect)
    m.receive_tsdu(encode_tsdu(replace(spdu, data_overflow=value)), now=0.0)
    return m


@pytest.mark.parametrize("versions", [Version.V1, Version.V1 | Version.V2])
def test_data_overflow_is_read_by_its_bit_1_only(versions: Version) -> None:
    """Bits 2-8 of Data Overflow are reserved: 0x02 says no more data follows.  Before, any
    value but 0 made the responder wait for CDOs, or refuse a version-1-only CN."""
    m = connect_with_overflow_field(0x02, versions)
    (ind,) = m.events()
    assert isinstance(ind, ConnectIndication) and ind.user_data == b"hi"
    assert m.state == "STA08" and m.data_to_send() == []


def test_data_overflow_bit_1_still_waits_for_the_rest() -> None:
    m = connect_with_overflow_field(0x03, Version.V1 | Version.V2)
    assert m.events() == [] and m.state == "STA01D"  # OA sent, CDOs awaited
    refused = connect_with_overflow_field(0x01, Version.V1)
    (rf,) = [decode(t)[0] for t in refused.data_to_send()]
    assert type(rf).__name__ == "Refuse"


def test_a_decoders_reason_code_reaches_the_abort(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder says why it refuses bytes (0x09 for what is over a local limit); the AB
    says the same.  Before, every decode error went out as 0x05 (protocol error)."""
    p = pair()

    def refuse(*_a: object, **_k: object) -> list[object]:
        raise DecodeError("over a local limit", reason=RESTRICTION, reflect=b"\x01\x00")

    monkeypatch.setattr(machine_module, "decode_tsdu", refuse)
    p.resp.receive_tsdu(b"\x01\x00", now=0.0)
    (ab,) = decode(p.resp.data_to_send()[0])
    assert isinstance(ab, Abort) and ab.transport_disconnect == int(RESTRICTION)
    (ev,) = p.resp.events()
    assert isinstance(ev, ProviderAbortIndication) and ev.reason == RESTRICTION
