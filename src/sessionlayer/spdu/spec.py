"""The shape of the parameter field: which PI/PGI units an SPDU may carry.

An SPDU class lists its parameters as a tuple of entries, in the order
X.225 8.3 gives them; the codec walks that tuple to encode and to decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .formats import Format

__all__ = ["Param", "Group", "UserData", "Entry", "Grouped"]


@dataclass(frozen=True)
class Param:
    """A PI unit held in one field (or, for RF's reason, a tuple of fields)."""

    name: str | tuple[str, ...]
    code: int
    fmt: Format
    required: bool = False


@dataclass(frozen=True)
class Group:
    """A PGI unit whose value is itself a list of PI units (a :class:`Grouped`)."""

    name: str
    code: int
    cls: type[Grouped]
    required: bool = False


@dataclass(frozen=True)
class UserData:
    """PGI 193 (and, in CN, PGI 194 for more than 512 octets).

    ``limit_v1`` applies to protocol version 1; version 2 allows up to the
    length indicator's maximum (65535 less the other parameters) except
    where ``limit_v2`` says less.
    """

    limit_v1: int = 512
    limit_v2: int | None = None
    extended: bool = False
    name: str = "user_data"
    code: int = 193
    required: bool = False
    also: int | None = None  #: another code the decoder accepts for the same user data


Entry = Param | Group | UserData


class Grouped:
    """Base of the PGI value classes (Connection Identifier and the like)."""

    __slots__ = ()
    SPEC: ClassVar[tuple[Param, ...]] = ()

    def fields(self) -> dict[str, Any]:
        return {
            entry.name: getattr(self, entry.name)
            for entry in self.SPEC
            if isinstance(entry.name, str) and getattr(self, entry.name) is not None
        }
