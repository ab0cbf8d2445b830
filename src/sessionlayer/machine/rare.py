"""Fields few objects need, kept apart: an idle session's memory is mostly its objects'
slots, and a slot costs 8 octets on every object whether it is used or not.

An owner (the machine, the agent) has a ``rare`` slot (None until needed) and a ``more()``
method that makes its rare part; each rare field is a :class:`Rarely` descriptor on the
owner's class, named like the slot it replaces.  Reading one of an owner without a rare
part gives the default; setting one to its default keeps it so.  Only for fields off the
data path: a read costs a Python call.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, overload

__all__ = ["Rarely"]

V = TypeVar("V")


class _Owner(Protocol):
    rare: Any

    def more(self) -> Any: ...


class Rarely(Generic[V]):
    """A field kept in its owner's rare part (made when the field is first set to
    something other than its default); reads of an owner without one give the default."""

    __slots__ = ("default", "name")

    def __init__(self, default: V) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name.lstrip("_")

    @overload
    def __get__(self, obj: None, owner: type) -> Rarely[V]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> V: ...
    def __get__(self, obj: object | None, owner: type) -> V | Rarely[V]:
        if obj is None:
            return self
        rare = obj.rare  # type: ignore[attr-defined]  # (an _Owner: no cast() call here)
        return self.default if rare is None else getattr(rare, self.name)

    def __set__(self, obj: _Owner, value: V) -> None:
        if value != self.default or obj.rare is not None:
            setattr(obj.more(), self.name, value)
