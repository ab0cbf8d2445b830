"""``--allow`` / ``--deny``: parsing, first match decides, the default, and what can be
decided from the address alone (at TCP accept)."""

from __future__ import annotations

import pytest
from tests.relay.helpers import CONFIG, PLAIN, run, upstream

import sessionlayer
from sessionlayer import ConnectRefused, RefuseReason
from sessionlayer.relay import Policy, Rule, start


def policy(*rules: tuple[str, str]) -> Policy:
    return Policy.from_rules(Rule.parse(action, text) for action, text in rules)  # type: ignore[arg-type]


def test_parse_each_key() -> None:
    rule = Rule.parse("allow", "peer=10.0.0.0/8, calling=0001,called=0x00AB")
    assert str(rule.peer) == "10.0.0.0/8"
    assert (rule.calling, rule.called) == (b"\x00\x01", b"\x00\xab")
    assert str(rule) == "allow peer=10.0.0.0/8,calling=0001,called=00ab"
    assert Rule.parse("deny", "called=-").matches(None, None, None)
    assert not Rule.parse("deny", "called=-").matches(None, None, b"\x00\x01")
    assert Rule.parse("deny", "peer=*,calling=*").peer_only


@pytest.mark.parametrize("text", ["", "peer", "peer=nowhere", "host=1.2.3.4", "calling=0",
                                  "called=zz", "calling=" + "00" * 17])  # fmt: skip
def test_bad_rules_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError) as info:
        Rule.parse("allow", text)
    assert str(info.value)


def test_no_rules_allow_everything() -> None:
    assert Policy().admits_peer("192.0.2.1")
    assert Policy().decide("192.0.2.1", None, None) == (True, None)


def test_first_match_decides_and_allow_rules_make_the_default_deny() -> None:
    p = policy(("deny", "peer=10.1.0.0/16"), ("allow", "peer=10.0.0.0/8"))
    assert not p.decide("10.1.2.3", None, None)[0]
    assert p.decide("10.2.0.1", None, None)[0]
    assert not p.decide("192.0.2.1", None, None)[0]  # no match, an allow exists: denied
    only_deny = policy(("deny", "peer=10.0.0.0/8"))
    assert only_deny.decide("192.0.2.1", None, None)[0]


def test_selectors_decide_at_the_cn() -> None:
    p = policy(("allow", "called=0001"), ("deny", "peer=0.0.0.0/0"))
    assert p.admits_peer("192.0.2.1")  # the CN's selector may still allow it
    assert p.decide("192.0.2.1", b"\x00\x09", b"\x00\x01")[0]
    assert not p.decide("192.0.2.1", b"\x00\x09", b"\x00\x02")[0]


def test_addresses_closed_at_accept() -> None:
    p = policy(("allow", "peer=127.0.0.0/8"))
    assert p.admits_peer("127.0.0.1") and p.admits_peer("::ffff:127.0.0.1")
    assert not p.admits_peer("192.0.2.1") and not p.admits_peer("::1")
    v6 = policy(("deny", "peer=::1"))
    assert not v6.admits_peer("::1") and v6.admits_peer("127.0.0.1")


@pytest.mark.parametrize("text", ["peer=10.0.0.0/8,peer=192.168.0.0/16",
                                  "called=0001,called=0002", "calling=0001,CALLING=*"])
def test_a_key_given_twice_in_a_rule_is_refused(text: str) -> None:
    """It kept the last value: "--deny peer=A,peer=B" denied B only, without a word."""
    with pytest.raises(ValueError, match="twice: a rule matches all of its entries"):
        Rule.parse("deny", text)


def test_transport_selectors_are_rule_keys() -> None:
    """The client's TSAPs went to the upstream unlooked at: an SSEL rule did not limit
    which service an upstream that routes by TSAP reached."""
    rule = Rule.parse("allow", "called_tsap=0001,calling_tsap=-")
    assert not rule.peer_only and str(rule) == "allow calling_tsap=-,called_tsap=0001"
    assert rule.matches(None, None, None, called_tsap=b"\x00\x01")
    assert not rule.matches(None, None, None, called_tsap=b"ADMIN")
    assert not rule.matches(None, None, None, calling_tsap=b"\x00\x02", called_tsap=b"\x00\x01")
    with pytest.raises(ValueError, match="a transport selector has at most 32 octets"):
        Rule.parse("allow", "called_tsap=" + "00" * 33)


def test_a_called_tsap_the_rules_deny_is_refused_through_the_relay() -> None:
    async def main() -> None:
        policy = Policy.from_rules([Rule.parse("allow", "called_tsap=0001")])
        async with await upstream() as up:  # type: ignore[attr-defined]
            async with await start(("127.0.0.1", up.port), policy=policy) as relay:
                async def connect(tsap: bytes) -> sessionlayer.Session:
                    return await sessionlayer.connect(
                        "127.0.0.1", relay.port, user_data=b"hi", config=CONFIG,
                        options=PLAIN, called_tsel=tsap)  # fmt: skip
                with pytest.raises(ConnectRefused) as info:
                    await connect(b"ADMIN")
                assert info.value.reason == RefuseReason.SSEL_UNKNOWN
                async with await connect(b"\x00\x01") as session:
                    assert session.peer_data == b"ok"

    run(main())
