"""TSDU maximum sizes only where the CN proposes them, and the libiec61850 profile's CN kept
within a one-octet length indicator (Connection Identifier included), without sockets."""

from __future__ import annotations

import pytest

from sessionlayer.machine import (
    ConnectConfirm,
    ConnectIndication,
    DataIndication,
    ParameterError,
    SessionConfig,
    SessionMachine,
)
from sessionlayer.machine import negotiation as neg
from sessionlayer.spdu import (
    Accept,
    Connect,
    ConnectAcceptItem,
    DataTransfer,
    FunctionalUnit,
    GiveTokens,
    decode_tsdu,
    encode_tsdu,
)
from sessionlayer.spdu.types import ConnectionId

DUPLEX = int(FunctionalUnit.DUPLEX)
#: What libiec61850's client sends: version 2, protocol options 0, duplex, selectors 00 01,
#: and no TSDU Maximum Size (PI 21).
IEC_CN = Connect(
    item=ConnectAcceptItem(protocol_options=0, version=2),
    requirements=DUPLEX,
    calling_ssel=b"\x00\x01",
    called_ssel=b"\x00\x01",
    user_data=b"AARQ",
)
#: A Connection Identifier as sessionlayer.connect() sends it (16-octet common reference).
CID = ConnectionId(common_ref=bytes(range(16)))


def accepted_responder(config: SessionConfig) -> tuple[SessionMachine, Accept]:
    """A responder with ``config`` that took libiec61850's CN; the AC it sent."""
    m = SessionMachine("responder", config)
    m.transport_connected()
    m.receive_tsdu(encode_tsdu(IEC_CN), now=0.0)
    assert isinstance(m.next_event(), ConnectIndication)
    m.accept(user_data=b"AARE")
    (tsdu,) = m.data_to_send()
    (ac,) = decode_tsdu(tsdu)
    assert isinstance(ac, Accept)
    return m, ac


# ------------------------------------------------------------ responder: no PI 21 in the CN


@pytest.mark.parametrize("sizes", [(1024, 0), (0, 1024), (1024, 1024)])
def test_a_cn_without_tsdu_sizes_gets_an_ac_without_them(sizes: tuple[int, int]) -> None:
    config = SessionConfig.kernel_duplex(tsdu_max_send=sizes[0], tsdu_max_receive=sizes[1])
    m, ac = accepted_responder(config)
    assert ac.item is not None and ac.item.tsdu_max_size is None
    assert (m.tsdu_max_send, m.tsdu_max_receive) == (0, 0)
    assert m.plain_data


def test_without_tsdu_sizes_in_the_cn_the_responder_sends_unsegmented() -> None:
    m, _ = accepted_responder(SessionConfig.kernel_duplex(tsdu_max_send=1024))
    m.send_data(bytes(3000))
    (tsdu,) = m.data_to_send()  # one TSDU, longer than the configured 1024
    gt, dt = decode_tsdu(tsdu)
    assert isinstance(gt, GiveTokens) and isinstance(dt, DataTransfer)
    assert dt.enclosure is None and dt.user_data == bytes(3000)


def test_without_tsdu_sizes_in_the_cn_the_responder_takes_unsegmented_data() -> None:
    m, _ = accepted_responder(SessionConfig.kernel_duplex(tsdu_max_receive=1024))
    m.receive_tsdu(encode_tsdu(GiveTokens(), DataTransfer(user_data=bytes(3000))), now=0.0)
    assert m.events() == [DataIndication(bytes(3000))]


def test_respond_still_agrees_the_smaller_size_when_the_cn_proposes_one() -> None:
    config = SessionConfig(tsdu_max_send=1024, tsdu_max_receive=2048)
    item = ConnectAcceptItem(version=2, tsdu_max_size=(4096, 512))
    result, ac_item, _ = neg.respond(Connect(item=item), config, None, None)
    assert (result.tsdu_receive, result.tsdu_send) == (2048, 512)
    assert ac_item.tsdu_max_size == (2048, 512)
    item = ConnectAcceptItem(version=2, tsdu_max_size=(0, 8192))  # 0: no limit that way
    result, ac_item, _ = neg.respond(Connect(item=item), config, None, None)
    assert (result.tsdu_receive, result.tsdu_send) == (2048, 1024)


def test_respond_received_and_overflow_accept_follow_the_same_rule() -> None:
    config = SessionConfig(tsdu_max_send=1024, tsdu_max_receive=1024)
    (cn,) = decode_tsdu(encode_tsdu(IEC_CN))
    assert isinstance(cn, Connect)
    result, ac_item, _ = neg.respond_received(cn, config)
    assert (result.tsdu_send, result.tsdu_receive) == (0, 0)
    assert ac_item.tsdu_max_size is None
    overflowing = Connect(item=ConnectAcceptItem(version=2), data_overflow=1)
    assert neg.overflow_accept(overflowing, config).tsdu_max_size is None
    proposing = Connect(item=ConnectAcceptItem(version=2, tsdu_max_size=(4096, 0)),
                        data_overflow=1)  # fmt: skip
    assert neg.overflow_accept(proposing, config).tsdu_max_size == (1024, 1024)


# ------------------------------------------------------------ initiator: AC adds PI 21


def ac_with_sizes(sizes: tuple[int, int] | None) -> bytes:
    item = ConnectAcceptItem(protocol_options=0, tsdu_max_size=sizes, version=2)
    return encode_tsdu(Accept(item=item, requirements=DUPLEX, user_data=b"AARE"))


def confirmed_initiator(config: SessionConfig, ac: bytes) -> SessionMachine:
    m = SessionMachine("initiator", config)
    m.transport_connected()
    m.connect(user_data=b"AARQ")
    m.data_to_send()  # the CN
    m.receive_tsdu(ac, now=0.0)
    assert isinstance(m.next_event(), ConnectConfirm)
    return m


def test_an_ac_that_adds_tsdu_sizes_does_not_turn_segmenting_on() -> None:
    config = SessionConfig.libiec61850_profile()
    m = confirmed_initiator(config, ac_with_sizes((1024, 1024)))
    assert (m.tsdu_max_send, m.tsdu_max_receive) == (0, 0)
    m.send_data(bytes(3000))
    (tsdu,) = m.data_to_send()
    _, dt = decode_tsdu(tsdu)
    assert isinstance(dt, DataTransfer) and dt.enclosure is None
    (accept,) = decode_tsdu(ac_with_sizes((1024, 1024)))
    assert isinstance(accept, Accept)
    result = neg.read_accept(accept, config)
    assert result is not None and (result.tsdu_send, result.tsdu_receive) == (0, 0)


def test_an_initiator_that_proposed_sizes_still_takes_the_acs() -> None:
    config = SessionConfig(functional_units=FunctionalUnit.DUPLEX, tsdu_max_send=4096,
                           tsdu_max_receive=4096)  # fmt: skip
    m = confirmed_initiator(config, ac_with_sizes((1024, 2048)))
    assert (m.tsdu_max_send, m.tsdu_max_receive) == (1024, 2048)


# ------------------------------------------------------------ one-octet CN length indicator


def cn_of(m: SessionMachine) -> bytes:
    m.transport_connected()
    (cn,) = m.data_to_send()
    return cn


def test_the_profile_fits_212_octets_with_a_connection_identifier() -> None:
    m = SessionMachine("initiator", SessionConfig.libiec61850_profile())
    m.connect(user_data=bytes(212), connection_id=CID)
    cn = cn_of(m)
    assert cn[1] == 254 == len(cn) - 2  # one-octet LI, the longest it holds
    (spdu,) = decode_tsdu(cn)
    assert isinstance(spdu, Connect) and spdu.connection_id == CID  # PGI 1 is kept


def test_the_profile_refuses_a_cn_over_a_one_octet_li_and_says_by_how_much() -> None:
    m = SessionMachine("initiator", SessionConfig.libiec61850_profile())
    with pytest.raises(ParameterError, match=r"255 octets, 1 over the 254.*at most 212"):
        m.connect(user_data=bytes(213), connection_id=CID)
    with pytest.raises(ParameterError, match=r"272 octets, 18 over"):
        m.connect(user_data=bytes(230), connection_id=CID)
    assert m.state == "STA01" and m.data_to_send() == []
    m.connect(user_data=bytes(212), connection_id=CID)  # nothing changed: it goes on
    assert len(cn_of(m)) == 256


def test_the_user_data_cap_still_comes_first() -> None:
    m = SessionMachine("initiator", SessionConfig.libiec61850_profile())
    with pytest.raises(ParameterError, match="233 octets of user data, at most 232"):
        m.connect(user_data=bytes(233))
    m.connect(user_data=bytes(232))  # without a Connection Identifier 232 fit
    assert cn_of(m)[1] == 254


def test_kernel_duplex_without_selectors_fits_220_with_a_connection_identifier() -> None:
    m = SessionMachine("initiator", SessionConfig.kernel_duplex())
    with pytest.raises(ParameterError, match="1 over"):
        m.connect(user_data=bytes(221), connection_id=CID)
    m.connect(user_data=bytes(220), connection_id=CID)
    assert cn_of(m)[1] == 254


@pytest.mark.parametrize(
    "config",
    [SessionConfig.libiec61850_profile(one_octet_li=False), SessionConfig()],
    ids=["profile-without-the-check", "default"],
)
def test_without_one_octet_li_a_long_cn_goes_out(config: SessionConfig) -> None:
    m = SessionMachine("initiator", config)
    m.connect(user_data=bytes(230), connection_id=CID)
    cn = cn_of(m)
    assert cn[1] == 0xFF and int.from_bytes(cn[2:4], "big") == len(cn) - 4


def test_the_profiles_ask_for_a_one_octet_li() -> None:
    assert SessionConfig.kernel_duplex().one_octet_li
    assert SessionConfig.libiec61850_profile().one_octet_li
    assert not SessionConfig().one_octet_li


# ------------------------------------------------------------ responder: the AC's LI too


def responder_with_cn(config: SessionConfig) -> SessionMachine:
    m = SessionMachine("responder", config)
    m.transport_connected()
    m.receive_tsdu(encode_tsdu(IEC_CN), now=0.0)
    assert isinstance(m.next_event(), ConnectIndication)
    return m


def test_the_profile_keeps_the_ac_within_a_one_octet_li() -> None:
    # libiec61850's client rejects an AC with a three-octet LI: the responder refuses to
    # send one, says how much fits, and can still answer (nothing was sent, no state moved).
    m = responder_with_cn(SessionConfig.libiec61850_profile(max_user_data=None))
    with pytest.raises(ParameterError, match=r"the AC's parameter field is 255 octets, 1 over"):
        m.accept(user_data=bytes(217), connection_id=CID)
    assert m.state == "STA08" and m.data_to_send() == []
    m.accept(user_data=bytes(216), connection_id=CID)
    (ac,) = m.data_to_send()
    assert ac[1] == 254 and m.state == "STA713"


def test_without_one_octet_li_a_long_ac_goes_out() -> None:
    m = responder_with_cn(SessionConfig.libiec61850_profile(max_user_data=None,
                                                            one_octet_li=False))  # fmt: skip
    m.accept(user_data=bytes(217), connection_id=CID)
    (ac,) = m.data_to_send()
    assert ac[1] == 0xFF and int.from_bytes(ac[2:4], "big") == len(ac) - 4
