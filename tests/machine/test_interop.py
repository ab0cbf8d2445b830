"""Golden tests against the libiec61850 captures (shared/vectors/libiec61850.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sessionlayer.errors import AbortReason
from sessionlayer.machine import (
    ConnectConfirm,
    ConnectIndication,
    DataIndication,
    ParameterError,
    ReleaseConfirm,
    ReleaseIndication,
    SessionConfig,
    SessionMachine,
    UserAbortIndication,
)
from sessionlayer.spdu import Accept, Connect, FunctionalUnit, decode_tsdu

_CANDIDATES = [
    Path(__file__).resolve().parents[3] / "shared" / "vectors" / "libiec61850.json",
    Path(__file__).resolve().parents[2] / "shared" / "vectors" / "libiec61850.json",
    Path("/work/shared/vectors/libiec61850.json"),
]
VECTOR_FILE = next((p for p in _CANDIDATES if p.exists()), None)
pytestmark = pytest.mark.skipif(VECTOR_FILE is None, reason="libiec61850 vectors not found")


def vector(prefix: str) -> bytes:
    assert VECTOR_FILE is not None
    for entry in json.loads(VECTOR_FILE.read_text()):
        if entry["name"].startswith(prefix):
            return bytes.fromhex(entry["session"])
    raise KeyError(prefix)


def connected_responder() -> tuple[SessionMachine, bytes]:
    m = SessionMachine("responder", SessionConfig.kernel_duplex())
    m.transport_connected()
    m.receive_tsdu(vector("CN SPDU"), now=0.0)
    ac = vector("AC SPDU")
    ev = m.next_event()
    assert isinstance(ev, ConnectIndication)
    ac_spdu = decode_tsdu(ac)[0]
    assert isinstance(ac_spdu, Accept)
    m.accept(user_data=ac_spdu.user_data)
    return m, m.data_to_send()[0]


def test_responder_accepts_libiec61850_cn_and_answers_with_its_ac() -> None:
    m = SessionMachine("responder", SessionConfig.kernel_duplex())
    m.receive_tsdu(vector("CN SPDU"), now=0.0)
    ev = m.next_event()
    assert isinstance(ev, ConnectIndication)
    assert ev.functional_units == FunctionalUnit.DUPLEX
    assert ev.versions == 2
    assert ev.calling_ssel == ev.called_ssel == b"\x00\x01"
    assert ev.user_data is not None and len(ev.user_data) == 0x9C
    _, ac = connected_responder()
    # Byte for byte the AC libiec61850's own server sends, given the same user data.
    assert ac == vector("AC SPDU")


def test_ac_carries_only_parameters_libiec61850_knows() -> None:
    _, ac = connected_responder()
    assert ac[0] == 0x0E and ac[1] != 0xFF  # one-octet SPDU LI
    # Walk the top-level parameters: PGI 5, PI 20, PI 52, PGI 193 and nothing else.
    pos, codes = 2, []
    while pos < len(ac):
        codes.append(ac[pos])
        assert ac[pos + 1] != 0xFF
        pos += 2 + ac[pos + 1]
    assert codes == [5, 20, 52, 193]
    assert 16 not in codes  # no Token Item
    assert ac[2:10] == bytes.fromhex("0506130100160102")  # PGI 5 {19 = 0, 22 = 2}


def test_data_is_exactly_gt_dt_and_incoming_gt_dt_is_delivered() -> None:
    m, _ = connected_responder()
    m.receive_tsdu(vector("GT+DT carrying MMS read request"), now=0.0)
    ev = m.next_event()
    assert isinstance(ev, DataIndication)
    assert ev.data == vector("GT+DT carrying MMS read request")[4:]
    reply = vector("GT+DT carrying MMS read response")
    m.send_data(reply[4:])
    assert m.data_to_send() == [reply]
    assert reply[:4] == bytes.fromhex("01000100")


def test_fn_is_answered_by_dn() -> None:
    m, _ = connected_responder()
    m.receive_tsdu(vector("FN SPDU"), now=0.0)
    ev = m.next_event()
    assert isinstance(ev, ReleaseIndication)
    dn = vector("DN SPDU")
    m.release_response(True, user_data=decode_tsdu(dn)[0].user_data, now=0.0)  # type: ignore[attr-defined]
    assert m.data_to_send() == [dn]
    assert m.state == "STA16"
    m.transport_disconnected()
    assert m.is_closed and m.next_event() is None


def test_libiec61850_abort_is_a_user_abort() -> None:
    m, _ = connected_responder()
    m.receive_tsdu(vector("AB SPDU"), now=0.0)
    ev = m.next_event()
    assert isinstance(ev, UserAbortIndication)
    assert ev.user_data is not None
    assert m.wants_transport_disconnect and m.is_closed
    assert m.data_to_send() == []  # no AA after AB


def test_initiator_cn_has_the_shape_libiec61850_server_accepts() -> None:
    cn_vector = vector("CN SPDU")
    user_data = decode_tsdu(cn_vector)[0].user_data  # type: ignore[attr-defined]
    m = SessionMachine("initiator", SessionConfig.libiec61850_profile())
    m.transport_connected()
    m.connect(user_data=user_data)
    (cn,) = m.data_to_send()
    assert cn == cn_vector  # byte-identical to libiec61850's own client
    spdu = decode_tsdu(cn)[0]
    assert isinstance(spdu, Connect) and spdu.item is not None
    assert spdu.item.version == 2 and spdu.item.protocol_options == 0
    assert spdu.item.token_setting is None and spdu.item.tsdu_max_size is None


def test_initiator_takes_libiec61850_ac_and_sends_gt_dt_fn() -> None:
    cn_vector = vector("CN SPDU")
    m = SessionMachine("initiator", SessionConfig.libiec61850_profile())
    m.transport_connected()
    m.connect(user_data=decode_tsdu(cn_vector)[0].user_data)  # type: ignore[attr-defined]
    m.data_to_send()
    m.receive_tsdu(vector("AC SPDU"), now=0.0)
    ev = m.next_event()
    assert isinstance(ev, ConnectConfirm)
    assert ev.version == 2 and ev.functional_units == FunctionalUnit.DUPLEX
    req = vector("GT+DT carrying MMS read request")
    m.send_data(req[4:])
    assert m.data_to_send() == [req]
    m.receive_tsdu(vector("GT+DT carrying MMS read response"), now=0.0)
    assert isinstance(m.next_event(), DataIndication)
    fn = vector("FN SPDU")
    m.release(user_data=decode_tsdu(fn)[0].user_data)  # type: ignore[attr-defined]
    assert m.data_to_send() == [fn]
    m.receive_tsdu(vector("DN SPDU"), now=0.0)
    ev = m.next_event()
    assert isinstance(ev, ReleaseConfirm) and ev.accepted
    assert m.wants_transport_disconnect


def test_crossing_fn_from_iec61850_rust_server_is_a_release_collision() -> None:
    m = SessionMachine("initiator", SessionConfig.libiec61850_profile())
    m.connect(user_data=b"x")
    m.transport_connected()
    m.data_to_send()
    m.receive_tsdu(vector("AC SPDU"), now=0.0)
    m.release()
    m.data_to_send()
    m.receive_tsdu(vector("FN sent BY the iec61850-rust server"), now=0.0)
    # Duplex, no release token: a crossing FN is a release collision, not an error.
    assert m.state == "STA09"
    m.release_response(True, now=0.0)
    m.receive_tsdu(vector("DN from iec61850-rust"), now=0.0)
    ev = m.events()
    assert isinstance(ev[-1], ReleaseConfirm)


def test_profile_caps_user_data_so_lengths_stay_one_octet() -> None:
    m = SessionMachine("initiator", SessionConfig.libiec61850_profile())
    with pytest.raises(ParameterError):
        m.connect(user_data=bytes(233))
    assert m.data_to_send() == [] and m.state == "STA01"
    m.connect(user_data=bytes(232))
    m.transport_connected()
    (cn,) = m.data_to_send()
    assert cn[1] != 0xFF and cn[1] == len(cn) - 2
    assert AbortReason.USER_ABORT == 0x02
