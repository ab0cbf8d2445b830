"""Typed SPDU construction.

``sessionlayer.spdu.types`` builds its SPDU classes with a class decorator typed ``-> Any``,
so type checkers do not see their dataclass fields and reject keyword arguments.  ``make``
is the workaround (see docs/machine.md, "Codec notes"); with ``typing.dataclass_transform``
on that decorator it could go.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..spdu.types import SPDU

__all__ = ["make"]

S = TypeVar("S", bound=SPDU)


def make(cls: type[S], **fields: Any) -> S:
    """``cls(**fields)``, typed."""
    return cls(**fields)
