"""How one parameter value is written: the value formats of X.225 8.3.

Each format turns a Python value into the octets of a PI value and back.
``check`` returns a message when a value cannot be encoded (the caller
raises :class:`EncodeError`); ``decode`` raises :class:`DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DecodeError

__all__ = [
    "Format",
    "Uint",
    "Octets",
    "Serial",
    "TsduSizes",
    "ReasonAndData",
    "U8",
    "U16",
    "SERIAL",
    "TSDU_SIZES",
    "REASON_AND_DATA",
]


class Format:
    """Base: subclasses convert one PI value."""

    def check(self, value: Any) -> str | None:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def decode(self, raw: bytes) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Uint(Format):
    """An unsigned integer of fixed width, most significant octet first."""

    width: int

    def check(self, value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected an int, got {type(value).__name__}"
        if not 0 <= value < 1 << (8 * self.width):
            return f"{value} does not fit {self.width} octet(s)"
        return None

    def encode(self, value: Any) -> bytes:
        return int(value).to_bytes(self.width, "big")

    def decode(self, raw: bytes) -> Any:
        if len(raw) != self.width:
            raise DecodeError(f"expected {self.width} octet(s), got {len(raw)}")
        return int.from_bytes(raw, "big")


@dataclass(frozen=True)
class Octets(Format):
    """Opaque octets of bounded length."""

    max_len: int = 65535
    min_len: int = 0

    def check(self, value: Any) -> str | None:
        if not isinstance(value, bytes):
            return f"expected bytes, got {type(value).__name__}"
        if not self.min_len <= len(value) <= self.max_len:
            return f"{len(value)} octets, allowed {self.min_len}..{self.max_len}"
        return None

    def encode(self, value: Any) -> bytes:
        return bytes(value)

    def decode(self, raw: bytes) -> Any:
        if not self.min_len <= len(raw) <= self.max_len:
            raise DecodeError(f"{len(raw)} octets, allowed {self.min_len}..{self.max_len}")
        return bytes(raw)


@dataclass(frozen=True)
class Serial(Format):
    """A serial number: decimal digits in IA5 (ASCII), at most ``digits`` of them."""

    digits: int = 6

    def check(self, value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected an int, got {type(value).__name__}"
        if not 0 <= value < 10**self.digits:
            return f"serial number {value} outside 0..{10**self.digits - 1}"
        return None

    def encode(self, value: Any) -> bytes:
        return str(int(value)).encode("ascii")

    def decode(self, raw: bytes) -> Any:
        if not 1 <= len(raw) <= self.digits or not all(0x30 <= c <= 0x39 for c in raw):
            raise DecodeError(
                f"serial number must be 1..{self.digits} ASCII digits, got {raw.hex()}"
            )
        return int(raw)


class TsduSizes(Format):
    """TSDU Maximum Size (PI 21): (initiator->responder, responder->initiator)."""

    def check(self, value: Any) -> str | None:
        if (
            not isinstance(value, tuple)
            or len(value) != 2
            or not all(isinstance(v, int) and 0 <= v <= 0xFFFF for v in value)
        ):
            return "expected a pair of ints 0..65535"
        return None

    def encode(self, value: Any) -> bytes:
        first, second = int(value[0]), int(value[1])
        return first.to_bytes(2, "big") + second.to_bytes(2, "big")

    def decode(self, raw: bytes) -> Any:
        if len(raw) != 4:
            raise DecodeError(f"TSDU maximum size needs 4 octets, got {len(raw)}")
        return (int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big"))


class ReasonAndData(Format):
    """RF's Reason Code (PI 50): one reason octet, then (reason 2) user data."""

    def check(self, value: Any) -> str | None:
        reason, data = value
        if not isinstance(reason, int) or not 0 <= reason <= 255:
            return "reason must be an int 0..255"
        if data is not None and not isinstance(data, bytes):
            return "user data must be bytes"
        return None

    def encode(self, value: Any) -> bytes:
        reason, data = value
        return bytes((reason,)) + (data or b"")

    def decode(self, raw: bytes) -> Any:
        if not raw:
            raise DecodeError("reason code is empty")
        return (raw[0], bytes(raw[1:]) if len(raw) > 1 else None)


U8 = Uint(1)
U16 = Uint(2)
SERIAL = Serial(6)
TSDU_SIZES = TsduSizes()
REASON_AND_DATA = ReasonAndData()
