"""Issue 9: defects found against an independent ISO 8327 implementation (protocol core)."""

from __future__ import annotations

from tests.machine.helpers import SessionPair, decode

from sessionlayer.machine import (
    DEFAULT_FUNCTIONAL_UNITS,
    ConnectIndication,
    SessionConfig,
    SessionMachine,
)
from sessionlayer.spdu import Accept, Connect, ConnectAcceptItem, encode_tsdu
from sessionlayer.spdu import FunctionalUnit as FU

# ------------------------------------------------------------ 1. Initial Serial Number


def cn_of(config: SessionConfig) -> Connect:
    m = SessionMachine("initiator", config)
    m.transport_connected()
    m.connect(b"hi")
    (tsdu,) = m.data_to_send()
    (cn,) = decode(tsdu)
    assert isinstance(cn, Connect)
    return cn


def test_cn_carries_initial_serial_zero_with_sync_units_by_default() -> None:
    for units in (FU.DUPLEX | FU.MINOR_SYNC, FU.DUPLEX | FU.MAJOR_SYNC, FU.DUPLEX | FU.RESYNC):
        cn = cn_of(SessionConfig(functional_units=units))
        assert cn.item is not None and cn.item.initial_serial == 0, units
    tsdu = encode_tsdu(cn_of(SessionConfig()))
    assert b"\x17\x010" in tsdu  # PI 23, LI 1, "0"


def test_cn_without_sync_units_or_with_activities_has_no_initial_serial() -> None:
    for units in (FU.DUPLEX, FU.HALF_DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC | FU.MINOR_SYNC):
        cn = cn_of(SessionConfig(functional_units=units))
        assert cn.item is None or cn.item.initial_serial is None, units


def test_configured_initial_serial_is_sent_as_before() -> None:
    cn = cn_of(SessionConfig(initial_serial=19219))
    assert cn.item is not None and cn.item.initial_serial == 19219


def accept_for(cn: Connect, config: SessionConfig | None = None) -> Accept:
    m = SessionMachine("responder", config)
    m.transport_connected()
    m.receive_tsdu(encode_tsdu(cn), now=0.0)
    assert isinstance(m.next_event(), ConnectIndication)
    m.accept()
    (tsdu,) = m.data_to_send()
    (ac,) = decode(tsdu)
    assert isinstance(ac, Accept)
    return ac


def test_ac_carries_initial_serial_when_the_cn_left_it_out() -> None:
    item = ConnectAcceptItem(version=2)  # a peer that does not send PI 23
    cn = Connect(item=item, requirements=int(DEFAULT_FUNCTIONAL_UNITS))
    ac = accept_for(cn)
    assert ac.item is not None and ac.item.initial_serial == 0


def test_ac_echoes_the_cn_initial_serial() -> None:
    item = ConnectAcceptItem(version=2, initial_serial=42)
    cn = Connect(item=item, requirements=int(DEFAULT_FUNCTIONAL_UNITS))
    ac = accept_for(cn)
    assert ac.item is not None and ac.item.initial_serial == 42


def test_ac_has_no_initial_serial_with_activity_management() -> None:
    units = FU.HALF_DUPLEX | FU.ACTIVITY | FU.MAJOR_SYNC | FU.MINOR_SYNC
    cn = Connect(item=ConnectAcceptItem(version=2), requirements=int(units))
    ac = accept_for(cn, SessionConfig(functional_units=units))
    assert ac.item is None or ac.item.initial_serial is None


def test_paired_machines_start_at_zero() -> None:
    p = SessionPair()
    p.connect()
    assert p.init.initial_serial == p.resp.initial_serial == 0
    assert p.init.vm == p.resp.vm == 0
