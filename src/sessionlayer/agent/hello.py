"""What two sessionlayer peers say in the CN/AC/RF user data.

A CN between sessionlayer peers carries a *hello*: the application
parameters the initiator offers (each a list in preference order), its
credentials, and room for a resume token (the next step: resuming a
session after the connection is lost).  The AC carries the parameters the
responder chose; an RF (reason 2, user data) carries the reason as text.

The encoding is a magic prefix and a JSON object, so that it stays small,
inspectable in a capture, and open to new keys: a peer ignores keys it
does not know.  Each kind has a magic of its own (``SLH1`` hello, ``SLW1``
welcome, ``SLR1`` rejection), so a responder that echoes the CN's user data
in its AC (common for OSI test responders) is never taken for a sessionlayer
peer.  Peers that speak only X.225 (libiec61850) never see it: their user
data is passed through untouched.  Whatever the peer sends, decoding raises
only :class:`~sessionlayer.errors.DecodeError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DecodeError, Refuse, RefuseReason

if TYPE_CHECKING:
    from ..recovery.journal import Counts

__all__ = ["MAGIC", "WELCOME_MAGIC", "REJECTION_MAGIC", "Hello", "Welcome", "Rejection",
           "cap_max_tsdu", "is_hello", "is_welcome", "is_rejection", "negotiate"]  # fmt: skip

MAGIC = b"SLH1"  #: a hello (CN)
WELCOME_MAGIC = b"SLW1"  #: a welcome (AC)
REJECTION_MAGIC = b"SLR1"  #: a rejection (RF)
_VERSION = 1
#: Deepest nesting of JSON arrays and objects a peer may send (ours never nest past 3).
_MAX_DEPTH = 8


def is_hello(user_data: bytes | None) -> bool:
    return bytes(user_data or b"").startswith(MAGIC)


def is_welcome(user_data: bytes | None) -> bool:
    return bytes(user_data or b"").startswith(WELCOME_MAGIC)


def is_rejection(user_data: bytes | None) -> bool:
    return bytes(user_data or b"").startswith(REJECTION_MAGIC)


#: What ``json.dumps(obj, separators=(",", ":"), sort_keys=True)`` builds on each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _dump(magic: bytes, obj: dict[str, Any]) -> bytes:
    return magic + _ENCODER.encode(obj).encode()


def _load(magic: bytes, data: bytes, what: str) -> dict[str, Any]:
    if not data.startswith(magic):
        raise DecodeError(f"user data is not a sessionlayer {what}")
    raw = data[len(magic) :]
    opening = raw.count(b"[") + raw.count(b"{")  # a bound on the depth, in C
    if opening > _MAX_DEPTH and _depth(raw) > _MAX_DEPTH:  # (json recurses once per level)
        raise DecodeError(f"malformed sessionlayer {what}: nested deeper than {_MAX_DEPTH}")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"malformed sessionlayer {what}: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"malformed sessionlayer {what}: not an object")
    return obj


def _depth(raw: bytes) -> int:
    """How deep ``[``/``{`` nest in ``raw`` (outside strings): an upper bound, cheaply."""
    depth = deepest = 0
    in_string = escaped = False
    for octet in raw:
        if in_string:
            if escaped:
                escaped = False
            elif octet == 0x5C:  # backslash
                escaped = True
            elif octet == 0x22:
                in_string = False
        elif octet == 0x22:
            in_string = True
        elif octet in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > _MAX_DEPTH:
                    return deepest
        elif octet in (0x5D, 0x7D):
            depth -= 1
    return deepest


@dataclass(frozen=True)
class Hello:
    """The initiator's offer, in the CN user data."""

    offers: dict[str, list[str]] = field(default_factory=dict)
    credentials: dict[str, str] | None = None
    resume: str | None = None  #: the token of the session this connection resumes
    keepalive: bool = True  #: this peer answers keepalive probes
    data: bytes = b""  #: application bytes sent with the connect request
    recovery: bool = False  #: this peer resumes sessions (asks for a resume token)
    recv: int | None = None  #: (resuming) messages received on the session so far
    act: str | None = None  #: (resuming) the activity in progress here (its id, hex)
    #: (resuming) What this side has besides ``recv``: answers received to its confirmed
    #: requests, the peer's confirmed requests it answered, expedited messages received
    #: (``Journal.counts``).
    counts: Counts | None = None
    #: The largest TSDU this peer takes (its ``Options.max_tsdu_size``): the other side
    #: refuses a bigger message before it sends anything.
    max_tsdu: int | None = None

    def encode(self) -> bytes:
        offers = self.offers
        key: tuple[Any, ...] | None = None
        if (
            self.credentials is None  # credentials are not kept
            and type(offers) is dict
            and type(self.keepalive) is bool
            and type(self.data) is bytes
            and self.resume is None
            and self.recv is None
            and self.act is None
            and self.counts is None
            and type(self.recovery) is bool
            and (self.max_tsdu is None or type(self.max_tsdu) is int)
            and all(
                type(k) is str and type(v) is list and all(type(i) is str for i in v)
                for k, v in offers.items()
            )
        ):
            # Plain strings only (equal values of other types encode apart).
            key = (tuple((k, tuple(v)) for k, v in offers.items()), self.keepalive)
            key += (self.recovery, self.data, self.max_tsdu)
            known = _HELLO_OCTETS.get(key)
            if known is not None:
                return known
        obj: dict[str, Any] = {"v": _VERSION, "offers": self.offers, "ka": self.keepalive}
        if self.credentials is not None:
            obj["auth"] = self.credentials
        if self.resume is not None:
            obj["resume"] = self.resume
        if self.recovery:
            obj["rc"] = True
        if self.recv is not None:
            obj["recv"] = self.recv
        if self.act is not None:
            obj["act"] = self.act
        if self.counts is not None:
            obj["ct"] = list(self.counts)
        if self.data:
            obj["data"] = self.data.hex()
        if self.max_tsdu is not None:
            obj["mt"] = self.max_tsdu
        out = _dump(MAGIC, obj)
        if key is not None and len(out) <= _HELLO_CACHE_OCTETS:
            if len(_HELLO_OCTETS) >= _HELLO_CACHE_MAX:
                _HELLO_OCTETS.clear()
            _HELLO_OCTETS[key] = out
        return out

    @classmethod
    def decode(cls, raw: bytes) -> Hello:
        known = _HELLOS.get(raw) if type(raw) is bytes else None
        if known is not None:  # a hello seen before: the same values, in new containers
            offers, recovery, keepalive, data, max_tsdu = known
            return cls(
                offers={k: list(v) for k, v in offers},
                recovery=recovery,
                keepalive=keepalive,
                data=data,
                max_tsdu=max_tsdu,
            )
        hello = cls._decode(raw)
        plain = hello.credentials is None and hello.resume is None and hello.recv is None
        plain = plain and hello.counts is None
        if plain and hello.act is None and type(raw) is bytes and (
            len(raw) <= _HELLO_CACHE_OCTETS
        ):
            # Every client of a server sends the same hello; one with credentials is not kept.
            if len(_HELLOS) >= _HELLO_CACHE_MAX:
                _HELLOS.clear()
            offered = tuple((k, tuple(v)) for k, v in hello.offers.items())
            _HELLOS[raw] = (offered, hello.recovery, hello.keepalive, hello.data,
                            hello.max_tsdu)  # fmt: skip
        return hello

    @classmethod
    def _decode(cls, raw: bytes) -> Hello:
        obj = _load(MAGIC, raw, "hello")
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
            recovery=obj.get("rc") is True,
            recv=_count(obj.get("recv"), "hello"),
            act=_activity(obj.get("act"), "hello"),
            counts=_counts(obj.get("ct"), "hello"),
            max_tsdu=_size(obj.get("mt"), "hello"),
        )


#: Hellos without credentials or resume by their octets: (offers, recovery, keepalive, data,
#: max_tsdu).
_HELLOS: dict[bytes, tuple[tuple[tuple[str, tuple[str, ...]], ...], bool, bool, bytes,
                           int | None]] = {}  # fmt: skip
#: Encoded hellos without credentials or resume, by (offers, keepalive, recovery, data,
#: max_tsdu).
_HELLO_OCTETS: dict[tuple[Any, ...], bytes] = {}
_HELLO_CACHE_MAX = 64
_HELLO_CACHE_OCTETS = 512


@dataclass(frozen=True)
class Welcome:
    """The responder's choices, in the AC user data."""

    chosen: dict[str, str] = field(default_factory=dict)
    keepalive: bool = True
    data: bytes = b""
    session_id: str | None = None  #: the id the responder gave the session (hex)
    token: str | None = None  #: the token that resumes the session next time (recovery)
    #: (a resume) ``"resumed"`` (nothing lost) or ``"checkpoint"`` (back to ``checkpoint``)
    resumed: str | None = None
    recv: int | None = None  #: (a resume) messages the responder received so far
    checkpoint: tuple[int, bytes | None] | None = None  #: (serial, user data)
    act: str | None = None  #: (a resume) the activity in progress at the responder (hex id)
    #: The responder reads a CN sent right behind the CR (fast connect, see
    #: ``Options.fast_connect``): the initiator may send it so next time.
    fast: bool = False
    #: (a resume) What the responder has besides ``recv`` (as the hello's ``counts``).
    counts: Counts | None = None
    #: The largest TSDU the responder takes (as the hello's ``max_tsdu``).
    max_tsdu: int | None = None

    def encode(self, counts: Counts | None = None) -> bytes:
        """The welcome's octets (``counts``: in place of ``self.counts``)."""
        if counts is None:
            counts = self.counts
        sid, token = self.session_id, self.token
        key: tuple[tuple[Any, ...], bool, bytes, bool, bool, int | None] | None = None
        if (
            type(sid) is str
            and _is_id(sid)
            and (token is None or (type(token) is str and _is_token(token)))
            and self.resumed is None
            and self.recv is None
            and self.checkpoint is None
            and self.act is None
            and counts is None
            and type(self.data) is bytes
            and type(self.keepalive) is bool
            and type(self.fast) is bool
            and (self.max_tsdu is None or type(self.max_tsdu) is int)
            and type(self.chosen) is dict
            and all(type(k) is str and type(v) is str for k, v in self.chosen.items())
        ):
            # Plain strings only: equal values of other types (1 and True) encode apart.
            key = (tuple(self.chosen.items()), self.keepalive, self.data, token is not None,
                   self.fast, self.max_tsdu)  # fmt: skip
            known = _WELCOMES.get(key)
            if known is not None:  # the octets around the id (and the token)
                parts = known
                if token is None:
                    return parts[0] + sid.encode() + parts[1]
                return parts[0] + sid.encode() + parts[1] + token.encode() + parts[2]
        obj: dict[str, Any] = {"v": _VERSION, "chosen": self.chosen, "ka": self.keepalive}
        if self.data:
            obj["data"] = self.data.hex()
        if self.fast:
            obj["fc"] = True
        if sid is not None:
            obj["id"] = sid
        if self.max_tsdu is not None:
            obj["mt"] = self.max_tsdu
        if token is not None:
            obj["tk"] = token
        if self.resumed is not None:
            obj["resumed"] = self.resumed
        if self.recv is not None:
            obj["recv"] = self.recv
        if self.act is not None:
            obj["act"] = self.act
        if counts is not None:
            obj["ct"] = list(counts)
        if self.checkpoint is not None:
            serial, cp_data = self.checkpoint
            obj["cp"] = {"serial": serial, "data": cp_data.hex() if cp_data is not None else None}
        out = _dump(WELCOME_MAGIC, obj)
        if key is not None and sid is not None and len(out) <= _HELLO_CACHE_OCTETS:
            # sort_keys puts "id" after "chosen", "data" and "fc" and before "ka", "mt", "tk"
            # and "v";
            # the last occurrences of the id and the token are theirs (neither needs
            # escaping: hex digits and dots).
            head, found, tail = out.rpartition(b',"id":"' + sid.encode() + b'"')
            made: tuple[bytes, ...] | None = None
            if found and token is None:
                made = (head + b',"id":"', b'"' + tail)
            elif found and token is not None:
                mid, found2, end = tail.rpartition(b',"tk":"' + token.encode() + b'"')
                if found2:
                    made = (head + b',"id":"', b'"' + mid + b',"tk":"', b'"' + end)
            if made is not None:
                if len(_WELCOMES) >= _HELLO_CACHE_MAX:
                    _WELCOMES.clear()
                _WELCOMES[key] = made
        return out

    @classmethod
    def decode(cls, raw: bytes) -> Welcome:
        # (a resume's welcome has counts of its own: never alike, not looked for)
        shape = _welcome_shape(raw) if type(raw) is bytes and b'"recv":' not in raw else None
        if shape is not None:
            known = _WELCOME_SHAPES.get(shape[0])
            if known is not None:  # the octets around the id (and token) seen before
                chosen, keepalive, data, fast, max_tsdu = known
                return cls(chosen=dict(chosen), keepalive=keepalive, data=data,
                           session_id=shape[1], token=shape[2], fast=fast,
                           max_tsdu=max_tsdu)  # fmt: skip
        welcome = cls._decode(raw)
        if shape is not None and welcome.session_id == shape[1] and welcome.token == shape[2] and (
            welcome.resumed is None and welcome.recv is None and welcome.checkpoint is None
            and welcome.act is None and welcome.counts is None
            and len(raw) <= _HELLO_CACHE_OCTETS
        ):  # fmt: skip
            # Every welcome of a server says the same but for its id and token.
            if len(_WELCOME_SHAPES) >= _HELLO_CACHE_MAX:
                _WELCOME_SHAPES.clear()
            _WELCOME_SHAPES[shape[0]] = (tuple(welcome.chosen.items()), welcome.keepalive,
                                         welcome.data, welcome.fast,
                                         welcome.max_tsdu)  # fmt: skip
        return welcome

    @classmethod
    def _decode(cls, raw: bytes) -> Welcome:
        obj = _load(WELCOME_MAGIC, raw, "welcome")
        chosen = obj.get("chosen", {})
        if not isinstance(chosen, dict) or not all(isinstance(v, str) for v in chosen.values()):
            raise DecodeError("malformed sessionlayer welcome: chosen")
        sid = obj.get("id")
        if sid is not None and not (isinstance(sid, str) and _is_id(sid)):
            raise DecodeError("malformed sessionlayer welcome: id")
        token = obj.get("tk")
        if token is not None and not (isinstance(token, str) and _is_token(token)):
            raise DecodeError("malformed sessionlayer welcome: token")
        resumed = obj.get("resumed")
        if resumed not in (None, "resumed", "checkpoint"):
            raise DecodeError("malformed sessionlayer welcome: resumed")
        checkpoint = None
        cp = obj.get("cp")
        if cp is not None:
            if not isinstance(cp, dict):
                raise DecodeError("malformed sessionlayer welcome: checkpoint")
            serial = _count(cp.get("serial"), "welcome")
            cp_data = cp.get("data")
            if serial is None or not (cp_data is None or isinstance(cp_data, str)):
                raise DecodeError("malformed sessionlayer welcome: checkpoint")
            checkpoint = (serial, _hex(cp_data) if cp_data is not None else None)
        return cls(
            chosen=dict(chosen),
            keepalive=bool(obj.get("ka", False)),
            data=_hex(obj.get("data", "")),
            session_id=sid,
            token=token,
            resumed=resumed,
            recv=_count(obj.get("recv"), "welcome"),
            checkpoint=checkpoint,
            act=_activity(obj.get("act"), "welcome"),
            fast=obj.get("fc") is True,
            counts=_counts(obj.get("ct"), "welcome"),
            max_tsdu=_size(obj.get("mt"), "welcome"),
        )


def cap_max_tsdu(raw: bytes, limit: int) -> bytes:
    """A hello or welcome as ``raw`` but for its ``max_tsdu`` ("mt"), at most ``limit`` (put
    in when it had none): what a relay that takes TSDUs of at most ``limit`` octets passes
    on.  Every other key stays, those this version does not know too.  What does not
    decode as a hello or welcome is returned as it is."""
    for magic in (MAGIC, WELCOME_MAGIC):
        if raw.startswith(magic):
            break
    else:
        return raw
    try:
        obj = _load(magic, raw, "hello")
    except DecodeError:
        return raw
    said = obj.get("mt")
    if type(said) is int and 1 <= said <= limit:
        return raw
    obj["mt"] = limit
    return _dump(magic, obj)


@dataclass(frozen=True)
class Rejection:
    """Why the responder refused, in the RF user data."""

    message: str
    code: str = "refused"

    def encode(self) -> bytes:
        return _dump(REJECTION_MAGIC, {"v": _VERSION, "error": self.message, "code": self.code})

    @classmethod
    def decode(cls, raw: bytes) -> Rejection:
        obj = _load(REJECTION_MAGIC, raw, "rejection")
        return cls(message=str(obj.get("error", "")), code=str(obj.get("code", "refused")))


#: Welcome octets around the session id (and the token), by (choices, keepalive, data,
#: whether a token is in it, fast connect, max_tsdu).
_WELCOMES: dict[tuple[tuple[Any, ...], bool, bytes, bool, bool, int | None],
                tuple[bytes, ...]] = {}  # fmt: skip
#: What a welcome decoded to, by its octets around the id and the token (see
#: ``_welcome_shape``): (choices, keepalive, data, fast connect, max_tsdu).
_WELCOME_SHAPES: dict[tuple[bytes, bytes, bytes],
                      tuple[tuple[Any, ...], bool, bytes, bool, int | None]] = {}  # fmt: skip
_ID_KEY = b',"id":"'
_TOKEN_KEY = b',"tk":"'


def _welcome_shape(raw: bytes) -> tuple[tuple[bytes, bytes, bytes], str, str | None] | None:
    """A welcome's octets around its session id and token, the id and the token; None when
    it has no id.  Two welcomes alike around them decode alike: the id (32 hex digits) and
    the token (hex digits and dots) hold no quote, so JSON reads the rest the same.  Each key
    must appear once (a nested ``"id"`` would be another place)."""
    at = raw.find(_ID_KEY)
    if at < 0 or raw.count(_ID_KEY) != 1 or raw.count(_TOKEN_KEY) > 1:
        return None
    start = at + len(_ID_KEY)
    end = start + 32
    if raw[end : end + 1] != b'"':
        return None
    sid = raw[start:end].decode("latin-1")
    if not _is_id(sid):
        return None
    tail = raw[end:]
    at = tail.find(_TOKEN_KEY)
    if at < 0:
        return (raw[:start], tail, b""), sid, None
    begin = at + len(_TOKEN_KEY)
    stop = tail.find(b'"', begin)
    token = tail[begin:stop].decode("latin-1") if stop > 0 else ""
    if not token or not _is_token(token):
        return None
    return (raw[:start], tail[:begin], tail[stop:]), sid, token


def _count(value: Any, what: str) -> int | None:
    """A message count or serial number from the peer: None, or an int from 0 to 2**53."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= 1 << 53:
        raise DecodeError(f"malformed sessionlayer {what}: count")
    return value


def _size(value: Any, what: str) -> int | None:
    """A size limit from the peer (``mt``): None, or an int of at least 1."""
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= 1 << 53:
        raise DecodeError(f"malformed sessionlayer {what}: size")
    return value


def _counts(value: Any, what: str) -> Counts | None:
    """A resume's counts from the peer (``ct``): None, or a list of three counts (each
    as ``_count`` takes them; checked inline: every resume reads two), the first two
    both null when the peer's request counts are skewed (``Journal.skewed``)."""
    if value is None:
        return None
    if type(value) is list:
        try:
            first, second, third = value
        except ValueError:
            pass
        else:
            if type(third) is int and 0 <= third <= _MAX_COUNT:
                if first is None and second is None:
                    return None, None, third
                if (type(first) is int and type(second) is int
                        and 0 <= first <= _MAX_COUNT and 0 <= second <= _MAX_COUNT):  # fmt: skip
                    return first, second, third
    raise DecodeError(f"malformed sessionlayer {what}: counts")


_MAX_COUNT = 1 << 53


def _activity(value: Any, what: str) -> str | None:
    """An activity id from the peer: None, or 1 to 6 octets in hex."""
    if value is None:
        return None
    if not isinstance(value, str) or not 2 <= len(value) <= 12 or not _ID_DIGITS.issuperset(
        value
    ) or len(value) % 2:
        raise DecodeError(f"malformed sessionlayer {what}: activity")
    return value


def _is_token(value: str) -> bool:
    """A resume token's shape (sessionlayer.recovery.tokens checks what it says)."""
    return len(value) <= 128 and _TOKEN_CHARS.issuperset(value)


_TOKEN_CHARS = frozenset("0123456789abcdef.")


def _hex(value: Any) -> bytes:
    if not isinstance(value, str):
        raise DecodeError("malformed sessionlayer hello: data")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise DecodeError("malformed sessionlayer hello: data") from None


def _is_id(value: str) -> bool:
    """A session id as sessionlayer makes them: 32 lower-case hex digits."""
    return len(value) == 32 and _ID_DIGITS.issuperset(value)


_ID_DIGITS = frozenset("0123456789abcdef")


def negotiate(
    offers: Mapping[str, Sequence[str]], supported: Mapping[str, Sequence[str]]
) -> dict[str, str]:
    """For each parameter the initiator offers, the first of its values we support.

    Parameters we do not know are ignored; one we know with no common value refuses the
    session (:class:`~sessionlayer.errors.Refuse`, RF reason 2) with a reason that names
    both lists.
    """
    chosen: dict[str, str] = {}
    for name, values in offers.items():
        ours = supported.get(name)
        if ours is None:
            continue
        common = [v for v in values if v in ours]
        if not common:
            raise Refuse(
                f"no common {name}: offered {list(values)}, supported {list(ours)}",
                RefuseReason.USER_DATA,
            )
        chosen[name] = common[0]
    return chosen
