"""Two sans-I/O RFC 1006 connections talking through memory, and misuse."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionlayer.errors import DecodeError, LocalError
from sessionlayer.transport import (
    ConnectionState,
    ConnectRequested,
    DisconnectReason,
    DisconnectRequest,
    Error,
    ExpeditedData,
    ExpeditedReceived,
    Rfc1006Connection,
    TransportConnected,
    TransportDisconnected,
    TransportEvent,
    TsduReceived,
    encode_tpdu,
    encode_tpkt,
)
from sessionlayer.transport.connection import CONNECT_TSDU_MAX

TSAP = b"\x00\x01"


def _pair(**responder: Any) -> tuple[Rfc1006Connection, Rfc1006Connection]:
    return Rfc1006Connection("initiator"), Rfc1006Connection("responder", **responder)


def _establish(
    initiator: Rfc1006Connection, responder: Rfc1006Connection, **connect: Any
) -> TransportConnected:
    events = responder.receive_data(initiator.connect(TSAP, TSAP, **connect))
    assert len(events) == 1
    assert isinstance(events[0], ConnectRequested)
    [connected] = initiator.receive_data(responder.accept())
    assert isinstance(connected, TransportConnected)
    return connected


def test_establishment_matches_the_capture(libiec61850: list[dict[str, Any]]) -> None:
    initiator, responder = _pair()
    cr = initiator.connect(TSAP, TSAP, 8192)
    assert cr.hex() == libiec61850[0]["tpkt"] + libiec61850[0]["cotp"]
    [requested] = responder.receive_data(cr)
    assert isinstance(requested, ConnectRequested)
    assert requested.cr.tpdu_size_octets == 8192
    cc = responder.accept()
    assert cc.hex() == libiec61850[1]["tpkt"] + libiec61850[1]["cotp"]
    assert initiator.receive_data(cc) == [TransportConnected(8192, TSAP, TSAP)]
    assert initiator.state is responder.state is ConnectionState.OPEN
    assert initiator.tpdu_size == responder.tpdu_size == 8192


@pytest.mark.parametrize(
    ("proposed", "responder_max", "agreed"),
    [(8192, 8192, 8192), (8192, 2048, 2048), (1024, 8192, 1024), (128, 128, 128)],
)
def test_tpdu_size_negotiation(proposed: int, responder_max: int, agreed: int) -> None:
    initiator, responder = _pair(max_tpdu_size=responder_max)
    connected = _establish(initiator, responder, tpdu_size=proposed)
    assert connected.tpdu_size == agreed
    assert responder.tpdu_size == agreed
    tsdu = bytes(5000)
    wire = initiator.send_tsdu(tsdu)
    assert wire.count(b"\x02\xf0") >= len(tsdu) // (agreed - 3)
    assert responder.receive_data(wire) == [TsduReceived(tsdu)]


def test_accept_may_lower_the_size() -> None:
    initiator, responder = _pair()
    responder.receive_data(initiator.connect(tpdu_size=8192))
    [connected] = initiator.receive_data(responder.accept(max_tpdu_size=512))
    assert isinstance(connected, TransportConnected)
    assert connected.tpdu_size == 512


def test_cr_without_size_means_128() -> None:
    responder = Rfc1006Connection("responder")
    [requested] = responder.receive_data(bytes.fromhex("0300000b06e00000000100"))
    assert isinstance(requested, ConnectRequested)
    cc = responder.accept()
    assert cc.hex() == "0300000b06d00001000100"
    assert responder.tpdu_size == 128


@pytest.mark.parametrize("ours", [8192, 65408])
@pytest.mark.parametrize("code", [0x0E, 0x10])
def test_a_cr_proposing_more_than_8192_gets_8192(code: int, ours: int) -> None:
    # A CR with TPDU size code 0x0E (16384) or 0x10 (65531), as RFC 1006 stacks send: the
    # CC says 0x0D, the most its TPDU size parameter can (no preferred size was offered).
    responder = Rfc1006Connection("responder", max_tpdu_size=ours)
    [requested] = responder.receive_data(bytes.fromhex(f"0300000e09e00000000100c001{code:02x}"))
    assert isinstance(requested, ConnectRequested)
    assert responder.accept().hex() == "0300000e09d00001000100c0010d"
    assert responder.tpdu_size == 8192


def test_cc_without_calling_tsap_keeps_ours() -> None:
    initiator = Rfc1006Connection()
    initiator.connect(b"\x00\x02", TSAP, 8192)
    [connected] = initiator.receive_data(bytes.fromhex("030000120dd00001000100c0010dc2020001"))
    assert connected == TransportConnected(8192, b"\x00\x02", TSAP)


def test_tsdus_both_ways_fed_byte_by_byte() -> None:
    initiator, responder = _pair()
    _establish(initiator, responder)
    big = bytes(range(256)) * 248
    wire = responder.send_tsdu(big) + responder.send_tsdu(b"small")
    events: list[TransportEvent] = []
    for i in range(len(wire)):
        events += initiator.receive_data(wire[i : i + 1])
    assert events == [TsduReceived(big), TsduReceived(b"small")]
    assert responder.receive_data(initiator.send_tsdu(b"hello")) == [TsduReceived(b"hello")]


def test_refuse() -> None:
    initiator, responder = _pair()
    responder.receive_data(initiator.connect())
    dr = responder.refuse(DisconnectReason.ADDRESS_UNKNOWN)
    assert dr.hex() == "0300000b06800001000103"
    [event] = initiator.receive_data(dr)
    assert event == TransportDisconnected(
        DisconnectReason.ADDRESS_UNKNOWN, DisconnectRequest(1, 1, DisconnectReason.ADDRESS_UNKNOWN)
    )
    assert initiator.state is responder.state is ConnectionState.CLOSED
    assert initiator.receive_data(b"ignored after the DR") == []


def test_expedited_data_when_agreed() -> None:
    initiator = Rfc1006Connection(expedited=True)
    responder = Rfc1006Connection("responder", expedited=True)
    assert _establish(initiator, responder).expedited
    assert responder.receive_data(initiator.send_expedited(b"hurry")) == [
        ExpeditedReceived(b"hurry")
    ]


def test_expedited_data_needs_both_sides() -> None:
    initiator = Rfc1006Connection(expedited=True)
    responder = Rfc1006Connection("responder")
    assert not _establish(initiator, responder).expedited
    with pytest.raises(LocalError):
        initiator.send_expedited(b"x")
    ed = encode_tpkt(encode_tpdu(ExpeditedData(b"x")))  # (a peer that sends it anyway)
    with pytest.raises(DecodeError, match="expedited data was not agreed"):
        responder.receive_data(ed)


def test_error_tpdu_ends_the_connection() -> None:
    initiator, responder = _pair()
    _establish(initiator, responder)
    er = Error(1, 2)
    [event] = initiator.receive_data(encode_tpkt(encode_tpdu(er)))
    assert event == TransportDisconnected(DisconnectReason.PROTOCOL_ERROR, er)


def test_connection_lost() -> None:
    initiator, responder = _pair()
    _establish(initiator, responder)
    assert initiator.connection_lost() == [TransportDisconnected(DisconnectReason.NORMAL)]
    assert initiator.connection_lost() == []
    responder.receive_data(b"\x03\x00")
    assert responder.connection_lost() == [TransportDisconnected(DisconnectReason.NOT_SPECIFIED)]


def test_misuse_raises_local_error() -> None:
    initiator, responder = _pair()
    with pytest.raises(LocalError):
        initiator.send_tsdu(b"too early")
    with pytest.raises(LocalError):
        initiator.accept()
    with pytest.raises(LocalError):
        responder.connect()
    with pytest.raises(LocalError):
        responder.accept()  # no CR yet
    initiator.connect()
    with pytest.raises(LocalError):
        initiator.connect()
    with pytest.raises(LocalError):
        Rfc1006Connection("server")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "wire"),
    [
        ("responder", "0300000702f080"),  # DT before any CR
        ("responder", "0300001611d00001000100c0010dc2020001c1020001"),  # CC to a responder
        ("responder", "0300000b06800001000100"),  # DR before any CR
        ("initiator", "0300000702f080"),  # DT before connecting
        ("responder", "0400000702f080"),  # not a TPKT
        ("responder", "0300000802f08000"),  # not a TPDU
    ],
)
def test_unexpected_input_raises_decode_error(role: Any, wire: str) -> None:
    connection = Rfc1006Connection(role)
    with pytest.raises(DecodeError):
        connection.receive_data(bytes.fromhex(wire))
    assert connection.state is ConnectionState.FAILED
    with pytest.raises(DecodeError):
        connection.receive_data(b"")


@pytest.mark.parametrize("class_option", [0x50, 0xF0, 0x52])
def test_cr_with_an_undefined_class_is_a_protocol_error(class_option: int) -> None:
    # ISO 8073 13.3.3 defines classes 0..4; this CR was answered with a class 0 CC.
    responder = Rfc1006Connection("responder")
    with pytest.raises(DecodeError, match="protocol class"):
        responder.receive_data(bytes.fromhex(f"0300000b06e000000001{class_option:02x}"))
    assert responder.state is ConnectionState.FAILED


def test_a_class_0_cr_with_user_data_is_a_protocol_error() -> None:
    """ISO 8073 13.3.2: no user data in a class 0 CR (before: taken, and ignored)."""
    responder = Rfc1006Connection("responder")
    with pytest.raises(DecodeError, match="user data"):
        responder.receive_data(bytes.fromhex("0300000e06e00000000100") + b"abc")
    assert responder.state is ConnectionState.FAILED


@pytest.mark.parametrize("class_option", [0x02, 0x20, 0x42])
def test_cr_proposing_a_class_up_to_4_is_answered_in_class_0(class_option: int) -> None:
    responder = Rfc1006Connection("responder")
    [requested] = responder.receive_data(bytes.fromhex(f"0300000b06e000000001{class_option:02x}"))
    assert isinstance(requested, ConnectRequested)
    assert responder.accept().hex() == "0300000b06d00001000100"


def test_cc_with_another_class_is_refused() -> None:
    initiator = Rfc1006Connection()
    initiator.connect()
    with pytest.raises(DecodeError, match="class 2"):
        initiator.receive_data(bytes.fromhex("0300000b06d00001000120"))


def test_oversized_tsdu_is_refused() -> None:
    initiator = Rfc1006Connection()
    responder = Rfc1006Connection("responder", max_tsdu_size=1000)
    _establish(initiator, responder)
    responder.session_open()
    with pytest.raises(DecodeError, match="exceeds"):
        responder.receive_data(initiator.send_tsdu(bytes(1001)))


def test_the_connect_phase_takes_what_one_spdu_holds_whatever_the_limit() -> None:
    """Until session_open() (the AC), a TSDU is bounded by CONNECT_TSDU_MAX, not the
    smaller *max_tsdu_size*: a CN or CDO within X.225's limits is never refused for it."""
    initiator = Rfc1006Connection()
    responder = Rfc1006Connection("responder", max_tsdu_size=1000)
    _establish(initiator, responder)
    (got,) = responder.receive_data(initiator.send_tsdu(bytes(CONNECT_TSDU_MAX)))
    assert isinstance(got, TsduReceived) and len(got.data) == CONNECT_TSDU_MAX
    with pytest.raises(DecodeError, match="exceeds"):
        responder.receive_data(initiator.send_tsdu(bytes(CONNECT_TSDU_MAX + 1)))


CAPTURED_CR = bytes.fromhex("0300001611e00000000100c0010dc2020001c1020001")
framed_junk = st.lists(
    st.one_of(
        st.binary(min_size=3, max_size=40).map(encode_tpkt),
        st.binary(min_size=1, max_size=40).map(lambda b: encode_tpkt(b"\x02\xf0" + b)),
        st.binary(max_size=8),
    ),
    max_size=6,
).map(b"".join)


def _run(chunks: list[bytes], opened: bool) -> tuple[list[TransportEvent], bool]:
    connection = Rfc1006Connection("responder")
    if opened:
        connection.receive_data(CAPTURED_CR)
        connection.accept()
    events: list[TransportEvent] = []
    try:
        for chunk in chunks:
            events += connection.receive_data(chunk)
    except DecodeError:
        return events, True
    return events, False


@given(st.binary(max_size=120) | framed_junk, st.booleans())
def test_fuzz_responder_whole_vs_bytewise(data: bytes, opened: bool) -> None:
    whole, whole_failed = _run([data], opened)
    single, single_failed = _run([data[i : i + 1] for i in range(len(data))], opened)
    assert whole_failed == single_failed
    if not whole_failed:
        assert whole == single
    else:
        assert whole == single[: len(whole)]


# ---------------------------------------------------------------- preferred maximum TPDU size


def _negotiate(initiator_size: int, responder_size: int) -> tuple[int | None, int | None, bytes]:
    from sessionlayer.transport import Rfc1006Connection

    a = Rfc1006Connection("initiator", max_tpdu_size=initiator_size)
    b = Rfc1006Connection("responder", max_tpdu_size=responder_size)
    cr = a.connect()
    b.receive_data(cr)
    a.receive_data(b.accept())
    return a.tpdu_size, b.tpdu_size, cr


def test_large_tpdus_are_agreed_with_the_preferred_size_parameter() -> None:
    mine, theirs, cr = _negotiate(65408, 65408)
    assert mine == theirs == 65408
    assert bytes.fromhex("f0020" + "1ff") in cr  # 511 x 128 octets
    assert bytes.fromhex("c0010d") in cr  # and 8192 for peers that do not know it


def test_the_smaller_preferred_size_wins() -> None:
    assert _negotiate(65408, 16384)[:2] == (16384, 16384)
    assert _negotiate(16384, 65408)[:2] == (16384, 16384)


@pytest.mark.parametrize(("preferred", "size", "code", "said"), [
    (2, 256, 0x08, None),  # 256: a power of 2, the TPDU size code says it alone
    (3, 384, 0x08, 3),  # 384: code 256 for a classic reader, 3 x 128 for one that prefers
])  # fmt: skip
def test_a_preferred_size_below_the_size_code_is_the_size(
    preferred: int, size: int, code: int, said: int | None
) -> None:
    """A CR with TPDU size 8192 and a preferred maximum of ``preferred`` x 128: the
    initiator may read either, so the smaller is agreed, and the CC says it both ways.
    Before, the responder agreed 8192 and sent TPDUs larger than the initiator asked for."""
    from sessionlayer.transport import ConnectionConfirm, ConnectionRequest, decode_tpdu

    cr = ConnectionRequest(src_ref=7, tpdu_size=0x0D, preferred_max_tpdu_size=preferred)
    b = Rfc1006Connection("responder")
    b.receive_data(encode_tpkt(encode_tpdu(cr)))
    cc = decode_tpdu(b.accept()[4:])
    assert isinstance(cc, ConnectionConfirm) and b.tpdu_size == size
    assert (cc.tpdu_size, cc.preferred_max_tpdu_size) == (code, said)
    wire, tpdus = b.send_tsdu(b"x" * 5000), []
    while wire:
        length = int.from_bytes(wire[2:4], "big")
        tpdus.append(length - 4)  # (a TPDU's size leaves out the TPKT header)
        wire = wire[length:]
    assert max(tpdus) == size


def test_a_cc_whose_preferred_size_is_below_its_size_code_is_taken_at_its_word() -> None:
    """The initiator sends no TPDU larger than the CC's preferred maximum, when that is
    the smaller (before: the TPDU size code's 8192)."""
    from sessionlayer.transport import ConnectionConfirm

    a = Rfc1006Connection("initiator")
    a.connect()
    cc = ConnectionConfirm(dst_ref=a.local_ref, src_ref=9, tpdu_size=0x0D,
                           preferred_max_tpdu_size=4)  # fmt: skip
    (event,) = a.receive_data(encode_tpkt(encode_tpdu(cc)))
    assert isinstance(event, TransportConnected) and event.tpdu_size == a.tpdu_size == 512


def test_a_classic_peer_gets_the_classic_size() -> None:
    assert _negotiate(65408, 8192)[:2] == (8192, 8192)
    assert _negotiate(8192, 65408)[:2] == (8192, 8192)


def test_a_large_tsdu_travels_in_large_tpdus() -> None:
    from sessionlayer.transport import Rfc1006Connection, TsduReceived

    a = Rfc1006Connection("initiator", max_tpdu_size=65408)
    b = Rfc1006Connection("responder", max_tpdu_size=65408)
    b.receive_data(a.connect())
    a.receive_data(b.accept())
    wire = a.send_tsdu(b"z" * 100_000)
    assert wire.count(b"\x02\xf0") == 2
    (event,) = b.receive_data(wire)
    assert isinstance(event, TsduReceived) and event.data == b"z" * 100_000


@pytest.mark.parametrize("size", [100, 8193, 65536, 12345])
def test_impossible_tpdu_sizes_are_refused(size: int) -> None:
    from sessionlayer.errors import LocalError
    from sessionlayer.transport import Rfc1006Connection

    with pytest.raises(LocalError):
        Rfc1006Connection("initiator", max_tpdu_size=size)


# ------------------------------------------------------------------ fast connect


@pytest.mark.parametrize("cut", ["one read", "two reads", "octet by octet"])
def test_what_comes_behind_the_cr_is_read_once_it_is_accepted(cut: str) -> None:
    """A CN sent right behind the CR (fast connect) waits for accept(), whether it came in
    the CR's read or later, and is then read as on an open connection."""
    initiator, responder = _pair()
    cr = initiator.connect()
    early = initiator.send_early(b"the CN" * 50)  # 300 octets: three 128-octet DTs
    assert early.count(b"\x03\x00\x00\x84") == 2  # (TPKT headers of the two full DTs)
    wire = cr + early
    chunks = {
        "one read": [wire],
        "two reads": [cr + early[:5], early[5:]],
        "octet by octet": [wire[i : i + 1] for i in range(len(wire))],
    }[cut]
    events: list[TransportEvent] = []
    for chunk in chunks:
        events += responder.receive_data(chunk)
    assert [type(e) for e in events] == [ConnectRequested]
    assert not responder.idle  # (what came behind the CR is held)
    cc = responder.accept()
    assert responder.receive_data(b"") == [TsduReceived(b"the CN" * 50)]
    assert responder.idle
    [connected] = initiator.receive_data(cc)
    assert isinstance(connected, TransportConnected)
    assert connected.tpdu_size == responder.tpdu_size == 8192


def test_a_peer_may_not_send_much_behind_its_cr() -> None:
    from sessionlayer.transport.connection import EARLY_DATA_MAX

    initiator, responder = _pair()
    wire = initiator.connect() + initiator.send_early(b"x" * EARLY_DATA_MAX)
    with pytest.raises(DecodeError, match="behind the CR"):
        responder.receive_data(wire)
    assert responder.state is ConnectionState.FAILED


def test_a_refused_cr_drops_what_came_behind_it() -> None:
    initiator, responder = _pair()
    responder.receive_data(initiator.connect() + initiator.send_early(b"CN"))
    responder.refuse()
    assert responder.receive_data(b"") == []
    assert responder.state is ConnectionState.CLOSED


def test_early_data_only_between_the_cr_and_the_cc() -> None:
    initiator, responder = _pair()
    with pytest.raises(LocalError):
        initiator.send_early(b"before the CR")
    with pytest.raises(LocalError):
        responder.send_early(b"a responder")
    _establish(initiator, responder)
    with pytest.raises(LocalError):
        initiator.send_early(b"after the CC")
