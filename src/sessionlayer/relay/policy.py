"""Who may use the relay: ``--allow`` / ``--deny`` rules on the peer's address and the CN's
session selectors, sans I/O.

A rule is ``key=value`` pairs joined by commas; every key given must match:

* ``peer=ADDRESS`` or ``peer=NETWORK/BITS``: the client's IP address (IPv4-mapped IPv6
  addresses count as IPv4);
* ``calling=HEX`` / ``called=HEX``: the CN's Calling / Called Session Selector (PI 51 / 52),
  as hex octets; ``-`` matches a CN without that selector, ``*`` any;
* ``calling_tsap=HEX`` / ``called_tsap=HEX``: the COTP CR's Calling / Called Transport
  Selector, the same way (an upstream that routes by TSAP is reached through it).

A key appears once in a rule.

Rules are tried in the order given; the first that matches decides.  When none matches the
connection is denied if any ``allow`` rule was given, else allowed.  A client that no rule
can allow is closed as soon as its TCP connection is accepted (nothing of it is parsed); a
CN that the rules deny is refused with RF reason 0x81 (session selector unknown).
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["Rule", "Policy"]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Action: TypeAlias = Literal["allow", "deny"]
#: A selector condition: the octets, ``NONE`` (the CN has no such selector) or None (any).
_ABSENT = b"\x00absent"  # (never a real selector value: selectors are compared as bytes)
_KEYS = ("peer", "calling", "called", "calling_tsap", "called_tsap")
#: The most octets of a selector: a session selector 16 (X.225), a TSAP 32 (ISO 8073).
_LONGEST = {"calling": 16, "called": 16, "calling_tsap": 32, "called_tsap": 32}


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _selector(key: str, text: str) -> bytes | None:
    if text == "*":
        return None
    if text == "-":
        return _ABSENT
    cleaned = text.lower().removeprefix("0x")
    if not cleaned or len(cleaned) % 2 or any(c not in string.hexdigits for c in cleaned):
        raise ValueError(f"{key}={text!r}: a selector is hex octets (e.g. 0001), '-' or '*'")
    value = bytes.fromhex(cleaned)
    if len(value) > _LONGEST[key]:
        what = "a transport" if key.endswith("_tsap") else "a session"
        raise ValueError(f"{key}={text!r}: {what} selector has at most {_LONGEST[key]} octets")
    return value


@dataclass(frozen=True)
class Rule:
    """One ``--allow`` or ``--deny`` rule (see the module docstring)."""

    action: Action
    peer: Network | None = None
    calling: bytes | None = None
    called: bytes | None = None
    calling_tsap: bytes | None = None
    called_tsap: bytes | None = None

    @classmethod
    def parse(cls, action: Action, text: str) -> Rule:
        """``Rule.parse("allow", "peer=10.0.0.0/8,called=0001")``; ValueError names what is
        wrong."""
        peer: Network | None = None
        selectors: dict[str, bytes | None] = dict.fromkeys(_LONGEST)
        if not text.strip():
            raise ValueError("an empty rule: give peer=, calling=, called=, calling_tsap="
                             " and/or called_tsap=")  # fmt: skip
        seen: set[str] = set()
        for part in text.split(","):
            if not part.strip():
                raise ValueError(f"an empty entry in {text!r}")
            key, sep, value = part.strip().partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or key not in _KEYS:
                raise ValueError(f"{part.strip()!r}: expected peer=, calling=, called=,"
                                 " calling_tsap= or called_tsap=")  # fmt: skip
            if key in seen:  # (the last one counted: "--deny peer=A,peer=B" denied B only)
                raise ValueError(f"{key}= twice: a rule matches all of its entries at once;"
                                 f" give one rule each (--allow/--deny again)")  # fmt: skip
            seen.add(key)
            if key == "peer":
                if value == "*":
                    continue
                try:
                    peer = ipaddress.ip_network(value, strict=False)
                except ValueError:
                    raise ValueError(f"peer={value!r}: not an IP address or network") from None
                if isinstance(peer, ipaddress.IPv6Network) and peer.prefixlen >= 96 and (
                    peer.network_address.ipv4_mapped is not None
                ):
                    mapped = peer.network_address.ipv4_mapped
                    peer = ipaddress.ip_network(f"{mapped}/{peer.prefixlen - 96}")
            else:
                selectors[key] = _selector(key, value)
        return cls(action, peer, **selectors)

    @property
    def peer_only(self) -> bool:
        """The rule looks at the peer's address only (it decides at TCP accept)."""
        return (self.calling is None and self.called is None and self.calling_tsap is None
                and self.called_tsap is None)  # fmt: skip

    def matches_peer(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if self.peer is None:
            return True
        return address is not None and address in self.peer

    def matches(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
                calling: bytes | None, called: bytes | None, *,
                calling_tsap: bytes | None = None,
                called_tsap: bytes | None = None) -> bool:  # fmt: skip
        return (
            self.matches_peer(address)
            and _selector_matches(self.calling, calling)
            and _selector_matches(self.called, called)
            and _selector_matches(self.calling_tsap, calling_tsap)
            and _selector_matches(self.called_tsap, called_tsap)
        )

    def __str__(self) -> str:
        parts = []
        if self.peer is not None:
            parts.append(f"peer={self.peer}")
        for key, value in (("calling", self.calling), ("called", self.called),
                           ("calling_tsap", self.calling_tsap),
                           ("called_tsap", self.called_tsap)):  # fmt: skip
            if value is not None:
                parts.append(f"{key}={'-' if value == _ABSENT else value.hex()}")
        return f"{self.action} {','.join(parts) or 'everything'}"


def _selector_matches(condition: bytes | None, value: bytes | None) -> bool:
    if condition is None:
        return True
    if condition == _ABSENT:
        return value is None
    return value is not None and bytes(value) == condition


@dataclass(frozen=True)
class Policy:
    """The rules in order; see the module docstring for how they decide."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_rules(cls, rules: Iterable[Rule]) -> Policy:
        return cls(tuple(rules))

    @property
    def default_allows(self) -> bool:
        """What happens when no rule matches: allowed unless an ``allow`` rule exists."""
        return not any(rule.action == "allow" for rule in self.rules)

    def admits_peer(self, peer: str | None) -> bool:
        """False when no CN from this address can be allowed (close it at once)."""
        address = _parse(peer)
        for rule in self.rules:
            if not rule.matches_peer(address):
                continue
            if not rule.peer_only:
                return True  # decided by the CN's selectors
            return rule.action == "allow"
        return self.default_allows

    def decide(self, peer: str | None, calling: bytes | None, called: bytes | None, *,
               calling_tsap: bytes | None = None,
               called_tsap: bytes | None = None) -> tuple[bool, Rule | None]:  # fmt: skip
        """(allowed, the rule that decided it, or None for the default)."""
        address = _parse(peer)
        for rule in self.rules:
            if rule.matches(address, calling, called, calling_tsap=calling_tsap,
                            called_tsap=called_tsap):  # fmt: skip
                return rule.action == "allow", rule
        return self.default_allows, None


def _parse(peer: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if peer is None:
        return None
    try:
        return _address(peer)
    except ValueError:
        return None  # (a Unix socket path or the like: only address-free rules match)
