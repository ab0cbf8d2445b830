"""Connect-time caches of the machine (machine/negotiation.py) against the uncached code.

``respond_received`` and ``read_received_accept`` answer from a cache keyed by the CN's
(AC's) negotiation fields and the configuration; ``build_connect`` reuses one Connect/Accept
Item per configuration.  Whatever the cache holds, they answer what the plain functions do.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.spdu import strategies as S

from sessionlayer.machine import SessionConfig
from sessionlayer.machine import negotiation as neg
from sessionlayer.spdu import Accept, Connect, ConnectAcceptItem, decode_tsdu, encode_tsdu
from sessionlayer.spdu.codes import FunctionalUnit, Token, TokenSetting, Version

FU = FunctionalUnit

configs = st.builds(
    SessionConfig,
    functional_units=st.integers(0, 0x1FFF).map(FU),
    versions=st.sampled_from([Version.V1, Version.V2, Version.V1 | Version.V2]),
    called_choice=st.dictionaries(
        st.sampled_from(list(Token)), st.sampled_from(list(TokenSetting)), max_size=4
    ),
    token_setting=st.dictionaries(
        st.sampled_from(list(Token)), st.sampled_from(list(TokenSetting)), max_size=4
    ),
    tsdu_max_send=st.sampled_from([0, 64, 9000]),
    tsdu_max_receive=st.sampled_from([0, 100, 65535]),
    initial_serial=st.none() | st.integers(0, 999999),
    second_initial_serial=st.none() | st.integers(0, 999999),
    extended_concatenation=st.booleans(),
)
wire_connects = st.sampled_from([1, 2]).flatmap(lambda v: S.connect(v, small=True))
wire_accepts = st.sampled_from([1, 2]).flatmap(lambda v: S.accept(v, small=True))


def _off_the_wire(spdu: Connect | Accept) -> Connect | Accept:
    (decoded,) = decode_tsdu(encode_tsdu(spdu))
    assert isinstance(decoded, type(spdu))
    return decoded


@settings(max_examples=300, deadline=None)
@given(wire_connects, configs, st.data())
def test_respond_received_is_respond(
    cn: Connect, config: SessionConfig, data: st.DataObject
) -> None:
    cn = _off_the_wire(cn)  # type: ignore[assignment]
    expected = neg.respond(cn, config, None, None)
    assert neg.respond_received(cn, config) == expected
    assert neg.respond_received(cn, config) == expected  # from the cache
    twin = SessionConfig(**{f: getattr(config, f) for f in config.__dataclass_fields__})
    assert neg.respond_received(cn, twin) == neg.respond(cn, twin, None, None)
    other = data.draw(configs)
    assert neg.respond_received(cn, other) == neg.respond(cn, other, None, None)


@settings(max_examples=300, deadline=None)
@given(wire_accepts, configs, configs)
def test_read_received_accept_is_read_accept(
    ac: Accept, config: SessionConfig, other: SessionConfig
) -> None:
    ac = _off_the_wire(ac)  # type: ignore[assignment]
    for cfg in (config, config, other):
        assert neg.read_received_accept(ac, cfg) == neg.read_accept(ac, cfg)


@settings(max_examples=200, deadline=None)
@given(configs, st.none() | st.binary(max_size=20))
def test_build_connect_is_the_same_cn(config: SessionConfig, user_data: bytes | None) -> None:
    neg._CONNECT_ITEMS.clear()
    first = neg.build_connect(config, user_data, None)
    again = neg.build_connect(config, user_data, None)
    assert first == again and first.item is again.item
    assert encode_tsdu(first) == encode_tsdu(again)


def test_caches_stay_bounded() -> None:
    cn = Connect(requirements=2)
    for i in range(3 * neg._CACHE_MAX):
        config = SessionConfig(initial_serial=i)
        neg.respond_received(cn, config)
        neg.build_connect(config, None, None)
    assert len(neg._RESPONSES) <= neg._CACHE_MAX
    assert len(neg._CONNECT_ITEMS) <= neg._CACHE_MAX


def test_equal_configs_share_entries_but_not_a_bool_serial() -> None:
    cn = Connect(requirements=0x3A, item=ConnectAcceptItem(version=2, initial_serial=5))
    one = SessionConfig(initial_serial=1)
    assert neg.respond_received(cn, one) == neg.respond(cn, one, None, None)
    assert neg.respond_received(cn, SessionConfig(initial_serial=1)) is neg.respond_received(
        cn, one
    )
    true = SessionConfig(initial_serial=True)  # == one, but only 1 encodes as a serial
    assert neg.respond_received(cn, true)[1].initial_serial is True
    assert neg.build_connect(true, None, None).item.initial_serial is True  # type: ignore[union-attr]


def test_an_unhashable_config_is_not_cached() -> None:
    config = SessionConfig(calling_ssel=bytearray(b"\x00\x01"))  # type: ignore[arg-type]
    cn = Connect(requirements=2)
    assert neg.respond_received(cn, config) == neg.respond(cn, config, None, None)
    assert neg.build_connect(config, None, None).calling_ssel == b"\x00\x01"
    ac = Accept(requirements=2)
    assert neg.read_received_accept(ac, config) == neg.read_accept(ac, config)


def test_config_mappings() -> None:
    a, b = SessionConfig(), SessionConfig(token_setting={Token.DATA: TokenSetting.RESPONDER})
    assert a.token_setting == {} and dict(b.token_setting) == {Token.DATA: TokenSetting.RESPONDER}
    assert SessionConfig(called_choice=[]).called_choice == {}  # type: ignore[arg-type]
    try:
        SessionConfig(token_setting=None)  # type: ignore[arg-type]
    except TypeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("token_setting=None is refused, as before")
