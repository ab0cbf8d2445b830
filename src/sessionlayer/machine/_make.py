"""Typed SPDU construction.

``make(cls, **fields)`` is ``cls(**fields)``.  It was a workaround for the SPDU class
decorator in ``sessionlayer.spdu.types`` hiding the dataclass fields from type checkers;
that decorator now carries ``@typing.dataclass_transform``, so ``Finish(user_data=...)``
type-checks directly and ``make`` is kept only for the callers that still use it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..spdu.types import SPDU

__all__ = ["make"]

S = TypeVar("S", bound=SPDU)


def make(cls: type[S], **fields: Any) -> S:
    """``cls(**fields)``, typed."""
    return cls(**fields)
