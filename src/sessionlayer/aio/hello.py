"""What two sessionlayer peers say in the CN/AC/RF user data.

A CN between sessionlayer peers carries a *hello*: the application
parameters the initiator offers (each a list in preference order), its
credentials, and room for a resume token (the next step: resuming a
session after the connection is lost).  The AC carries the parameters the
responder chose; an RF (reason 2, user data) carries the reason as text.

The encoding is a magic prefix and a JSON object, so that it stays small,
inspectable in a capture, and open to new keys: a peer ignores keys it
does not know.  Peers that speak only X.225 (libiec61850) never see it:
their user data is passed through untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import DecodeError

__all__ = ["MAGIC", "Hello", "Welcome", "Rejection", "is_hello"]

MAGIC = b"SLH1"
_VERSION = 1


def is_hello(user_data: bytes | None) -> bool:
    return bool(user_data) and bytes(user_data or b"").startswith(MAGIC)


def _dump(obj: dict[str, Any]) -> bytes:
    return MAGIC + json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _load(data: bytes) -> dict[str, Any]:
    if not data.startswith(MAGIC):
        raise DecodeError("user data is not a sessionlayer hello")
    try:
        obj = json.loads(data[len(MAGIC) :].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"malformed sessionlayer hello: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError("malformed sessionlayer hello: not an object")
    return obj


@dataclass(frozen=True)
class Hello:
    """The initiator's offer, in the CN user data."""

    offers: dict[str, list[str]] = field(default_factory=dict)
    credentials: dict[str, str] | None = None
    resume: str | None = None  #: reserved for session resumption
    keepalive: bool = True  #: this peer answers keepalive probes
    data: bytes = b""  #: application bytes sent with the connect request

    def encode(self) -> bytes:
        obj: dict[str, Any] = {"v": _VERSION, "offers": self.offers, "ka": self.keepalive}
        if self.credentials is not None:
            obj["auth"] = self.credentials
        if self.resume is not None:
            obj["resume"] = self.resume
        if self.data:
            obj["data"] = self.data.hex()
        return _dump(obj)

    @classmethod
    def decode(cls, raw: bytes) -> Hello:
        obj = _load(raw)
        offers = obj.get("offers", {})
        auth = obj.get("auth")
        if not isinstance(offers, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(i, str) for i in v)
            for k, v in offers.items()
        ):
            raise DecodeError("malformed sessionlayer hello: offers")
        if auth is not None and not (
            isinstance(auth, dict) and all(isinstance(v, str) for v in auth.values())
        ):
            raise DecodeError("malformed sessionlayer hello: credentials")
        resume = obj.get("resume")
        return cls(
            offers={k: list(v) for k, v in offers.items()},
            credentials=dict(auth) if auth is not None else None,
            resume=resume if isinstance(resume, str) else None,
            keepalive=bool(obj.get("ka", False)),
            data=_hex(obj.get("data", "")),
        )


@dataclass(frozen=True)
class Welcome:
    """The responder's choices, in the AC user data."""

    chosen: dict[str, str] = field(default_factory=dict)
    keepalive: bool = True
    data: bytes = b""

    def encode(self) -> bytes:
        obj: dict[str, Any] = {"v": _VERSION, "chosen": self.chosen, "ka": self.keepalive}
        if self.data:
            obj["data"] = self.data.hex()
        return _dump(obj)

    @classmethod
    def decode(cls, raw: bytes) -> Welcome:
        obj = _load(raw)
        chosen = obj.get("chosen", {})
        if not isinstance(chosen, dict) or not all(isinstance(v, str) for v in chosen.values()):
            raise DecodeError("malformed sessionlayer welcome: chosen")
        return cls(
            chosen=dict(chosen),
            keepalive=bool(obj.get("ka", False)),
            data=_hex(obj.get("data", "")),
        )


@dataclass(frozen=True)
class Rejection:
    """Why the responder refused, in the RF user data."""

    message: str
    code: str = "refused"

    def encode(self) -> bytes:
        return _dump({"v": _VERSION, "error": self.message, "code": self.code})

    @classmethod
    def decode(cls, raw: bytes) -> Rejection:
        obj = _load(raw)
        return cls(message=str(obj.get("error", "")), code=str(obj.get("code", "refused")))


def _hex(value: Any) -> bytes:
    if not isinstance(value, str):
        raise DecodeError("malformed sessionlayer hello: data")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise DecodeError("malformed sessionlayer hello: data") from None
