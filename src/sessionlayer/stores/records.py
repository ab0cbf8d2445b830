"""A :class:`SessionRecord` as JSON, the one encoding the SQLite and Redis stores share.

A record is a JSON object with one member per field, user data in base64::

    {"id": "9f...", "generation": 2, "identity": "anon", "chosen": {"codec": "json"},
     "created": 1727200000.25, "expires_at": null,
     "checkpoint": {"serial": 3, "user_data": "AQI="}, "node": "a", "peer": "10.0.0.7:5100"}

``"detached": true`` is there only while the session is detached: an attached record is
encoded as versions before encoded it, and one without the member is attached.  So are
``"previous_ok": true`` and ``"heard_at": <generation>``, only while tokens older than
the current one are still taken (after a resume, until the client is heard): those from
``heard_at`` on.  A record without them (an older version's too) takes only its current
token; one with ``"previous_ok": true`` alone (an older version's) the one before too.
``previous_ok`` is written with ``heard_at`` so that an older version reading the record
still takes the token before, and read first: an older version clearing it (its update
writes ``"previous_ok": false``) clears ``heard_at`` too.

SQLite keeps the whole object as text (:func:`encode`, :func:`decode`); Redis keeps each
member JSON-encoded in one field of the session's hash (:func:`to_json`,
:func:`from_json`).  Floats round-trip exactly (JSON has their shortest repr).  Members
the decoder does not know are ignored, so a newer writer's records stay readable.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from .base import Checkpoint, SessionRecord

__all__ = ["to_json", "from_json", "encode", "decode", "checkpoint_to_json", "heard_to_json",
           "from_fields", "Skipped", "check_timeout"]


def checkpoint_to_json(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    data = checkpoint.user_data
    return {
        "serial": checkpoint.serial,
        "user_data": None if data is None else base64.b64encode(data).decode("ascii"),
    }


def to_json(record: SessionRecord) -> dict[str, Any]:
    """The record as a JSON-ready dict (one member per field)."""
    return {
        "id": record.id,
        "generation": record.generation,
        "identity": record.identity,
        "chosen": dict(record.chosen),
        "created": record.created,
        "expires_at": record.expires_at,
        "checkpoint": checkpoint_to_json(record.checkpoint),
        "node": record.node,
        "peer": record.peer,
        **_DETACHED[record.detached],
        **heard_to_json(record.heard_at),
    }


_DETACHED: dict[bool, dict[str, Any]] = {False: {}, True: {"detached": True}}


def heard_to_json(heard_at: int | None) -> dict[str, Any]:
    """The members that say ``heard_at`` (none for None)."""
    return {} if heard_at is None else {"previous_ok": True, "heard_at": heard_at}


def encode(record: SessionRecord) -> str:
    return json.dumps(to_json(record), separators=(",", ":"))


def decode(text: str | bytes) -> SessionRecord:
    """The record in ``text``; ValueError if it is not one (whatever ``text`` is: nested
    too deep, members of the wrong types or out of range)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # (JSONDecodeError, UnicodeDecodeError)
        raise ValueError(f"a session record is a JSON object: {_why(exc)}") from None
    if not isinstance(obj, dict):
        raise ValueError("a session record is a JSON object")
    return from_json(obj)


def from_fields(fields: Mapping[Any, Any]) -> SessionRecord:
    """The record whose members are JSON-encoded one each in ``fields`` (a Redis hash);
    ValueError if it is not one, as :func:`decode`."""
    try:
        obj = {k: json.loads(v) for k, v in fields.items()}
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"a member is not JSON: {_why(exc)}") from None
    return from_json(obj)


def check_timeout(timeout: Any) -> float:
    """``timeout`` if it is a store's ``timeout``, a finite number of seconds above 0;
    ValueError otherwise (SQLite's -1 and 0 made every call fail, "the database is
    locked", and nan or inf raised the sqlite3 module's OverflowError or ValueError)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            0 < timeout < math.inf):  # fmt: skip
        raise ValueError(f"timeout must be a finite number of seconds above 0, not"
                         f" {timeout!r}")  # fmt: skip
    return timeout


class Skipped:
    """The corrupt records a store's listing or renewal went past: each logged once (a
    WARNING), at most ``limit`` remembered."""

    def __init__(self, store: str, limit: int = 1024) -> None:
        self.store = store
        self.limit = limit
        self.seen: set[str] = set()

    def skip(self, session_id: str, why: object) -> None:
        if session_id in self.seen:
            return
        if len(self.seen) >= self.limit:
            self.seen.clear()
        self.seen.add(session_id)
        logging.getLogger("sessionlayer.stores").warning(
            "session store %s: %s (skipped; the record is left as it is)", self.store, why)


def _why(exc: BaseException) -> str:
    return "nested too deep" if isinstance(exc, RecursionError) else str(exc)


def from_json(obj: Mapping[str, Any]) -> SessionRecord:
    """The record a :func:`to_json` dict describes; ValueError if it is not one (and
    nothing else, whatever ``obj`` holds)."""
    try:
        return _from_json(obj)
    except ValueError:
        raise
    except KeyError as exc:
        raise ValueError(f"a session record without {exc.args[0]!r}") from None
    except Exception as exc:  # (any other shape: not a record)
        raise ValueError(f"not a session record: {type(exc).__name__}: {_why(exc)}") from None


#: The largest serial number (ISO 8327: six decimal digits) and generation (a token's
#: nine) a record may hold.
_SERIAL_MAX = 999_999
_GENERATION_MAX = 999_999_999


def _from_json(obj: Mapping[str, Any]) -> SessionRecord:
    try:
        chosen = obj["chosen"]
        if not (isinstance(chosen, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in chosen.items()
        )):  # fmt: skip
            raise ValueError("chosen is not an object of strings")
        return SessionRecord(
            id=_str(obj["id"], "id"),
            generation=_int(obj["generation"], "generation", _GENERATION_MAX),
            identity=_str(obj["identity"], "identity"),
            chosen=dict(chosen),
            created=_float(obj["created"], "created"),
            expires_at=_optional_float(obj.get("expires_at"), "expires_at"),
            checkpoint=_checkpoint(obj.get("checkpoint")),
            node=_optional_str(obj.get("node"), "node"),
            peer=_optional_str(obj.get("peer"), "peer"),
            detached=_bool(obj.get("detached", False), "detached"),
            heard_at=_heard_at(obj),
        )
    except KeyError as exc:
        raise ValueError(f"a session record without {exc.args[0]!r}") from None


def _heard_at(obj: Mapping[str, Any]) -> int | None:
    if not _bool(obj.get("previous_ok", False), "previous_ok"):
        return None
    generation = obj["generation"]
    heard = obj.get("heard_at")
    if heard is None:  # (an older version's: the token before is taken too)
        return generation - 1 if generation > 0 else None
    heard = _int(heard, "heard_at")
    if not 0 <= heard < generation:
        raise ValueError(f"heard_at {heard} is not a generation before {generation}")
    return heard


def _checkpoint(value: Any) -> Checkpoint | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("checkpoint is not an object")
    data = value.get("user_data")
    if data is not None:
        if not isinstance(data, str):
            raise ValueError("checkpoint user_data is not base64 text")
        try:
            data = base64.b64decode(data, validate=True)
        except binascii.Error:
            raise ValueError("checkpoint user_data is not base64") from None
    serial = _int(value.get("serial"), "checkpoint serial", _SERIAL_MAX)
    return Checkpoint(serial=serial, user_data=data)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _int(value: Any, what: str, top: int | None = None) -> int:
    if type(value) is not int:
        raise ValueError(f"{what} is not an integer")
    if top is not None and not 0 <= value <= top:
        raise ValueError(f"{what} {value} is not from 0 to {top}")
    return value


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise ValueError(f"{what} is not true or false")
    return value


def _float(value: Any, what: str) -> float:
    if type(value) not in (int, float):
        raise ValueError(f"{what} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number")
    return float(value)


def _optional_float(value: Any, what: str) -> float | None:
    return None if value is None else _float(value, what)


def _optional_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)
