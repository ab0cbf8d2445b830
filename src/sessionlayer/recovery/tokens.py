"""Resume tokens: unforgeable, bound to one session and to the identity that opened it.

A token is ``<session id>.<generation>.<mac>``: the session's 32 hex digits, the number of
resumes so far, and the first 16 octets (hex) of HMAC-SHA256 over both and the identity,
keyed with the server's secret (one per store: every node sharing a store shares it).
Each resume advances the generation, so each token resumes at most once (the one before
is taken once more only until the client is heard on the connection it resumed, in case
the accept carrying the new one was lost): an older one is *replayed*, one whose MAC does
not verify for the session's identity is *invalid*, a valid one presented by another
identity is *wrong identity*.  MACs are compared in constant time
(:func:`hmac.compare_digest`).  Sans I/O: the secret and the identities are passed in.

Identities are keyed with the server's secret too (:func:`identity_of` with ``key``):
what a record keeps of who opened a session gives someone who reads the records nothing
to test a guessed password or a known certificate against.  (The secret itself is kept in
the store, for the nodes sharing it: whoever reads the whole store can test guesses and
make tokens.  docs/recovery.md says how to protect it.)  A server checks
tokens with more than one secret while the nodes sharing a store converge on one after
the store lost it (the one it signs with first, then the one before: :func:`verify`,
:func:`presenter_of`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence

from ..errors import ResumeRefused

__all__ = ["issue", "parse", "verify", "identity_of", "presenter_of", "ANONYMOUS"]

ANONYMOUS = "anon"  #: the identity of a session opened with no credentials or certificate
_MAC_OCTETS = 16


def identity_of(credentials: Mapping[str, str] | None, certificate: bytes | None,
                key: bytes | None = None) -> str:  # fmt: skip
    """Who opened a session: the client certificate (DER) under mutual TLS, else the
    credentials (canonical JSON), else :data:`ANONYMOUS`.  Neither is kept in the clear.

    With ``key`` (the server's secret, the store's: what a server passes), HMAC-SHA256
    keyed with it: ``"cert:hmac:<hex>"``, ``"cred:hmac:<hex>"``.  The records then give
    nothing to test a guess against without the secret, and the same password gives
    another value under another secret.  Without ``key``, the unkeyed SHA-256 that
    versions before kept in their records (``"cert:<hex>"``, ``"cred:<hex>"``): only to
    recognise those (:func:`presenter_of`)."""
    if certificate:
        if key is None:
            return "cert:" + hashlib.sha256(certificate).hexdigest()
        return "cert:hmac:" + hmac.digest(key, _CERT + certificate, "sha256").hex()
    if credentials is not None:
        canonical = json.dumps(dict(credentials), sort_keys=True, separators=(",", ":"))
        if key is None:
            return "cred:" + hashlib.sha256(canonical.encode()).hexdigest()
        return "cred:hmac:" + hmac.digest(key, _CRED + canonical.encode(), "sha256").hex()
    return ANONYMOUS


# What a keyed identity's HMAC covers first: never the start of a token's MAC input (32 hex
# digits and a dot), so one secret serves both.
_CERT = b"sessionlayer identity cert\0"
_CRED = b"sessionlayer identity cred\0"


def presenter_of(credentials: Mapping[str, str] | None, certificate: bytes | None,
                 identity: str, keys: Sequence[bytes]) -> str:  # fmt: skip
    """The identity of whoever presents a token, made to be compared with ``identity``,
    the session's (its record's): keyed with the one of ``keys`` (the server's secrets, the
    one it signs with first) that made ``identity`` if one did, unkeyed if ``identity`` is
    the unkeyed form of an older version's record, else keyed with the first (and then it
    is not ``identity``: :func:`verify` says *wrong identity*)."""
    first = None
    for key in keys:
        mine = identity_of(credentials, certificate, key)
        if mine in (identity, ANONYMOUS):
            return mine
        if first is None:
            first = mine
    if identity.startswith(("cred:", "cert:")) and identity[5:10] != "hmac:":
        return identity_of(credentials, certificate)  # (a record of an older version)
    return first if first is not None else identity_of(credentials, certificate)


def _mac(secret: bytes, session_id: str, generation: int, identity: str) -> str:
    message = f"{session_id}.{generation}.{identity}".encode()
    return hmac.digest(secret, message, "sha256")[:_MAC_OCTETS].hex()  # (one C call)


def issue(secret: bytes, session_id: str, generation: int, identity: str) -> str:
    """The token that resumes ``session_id`` at ``generation``."""
    return f"{session_id}.{generation}.{_mac(secret, session_id, generation, identity)}"


def parse(token: str) -> tuple[str, int]:
    """(session id, generation) of a well-formed token; ResumeRefused (token_invalid)
    otherwise, and nothing else whatever ``token`` is (a peer's).  Says nothing of whether
    it is genuine: see :func:`verify`.

    Well-formed is what :func:`issue` makes, and only that (one spelling per token): 32
    lowercase hex digits, the generation in ASCII decimal digits without leading zeros
    (``str.isdigit`` alone takes "\\u00b2", which ``int`` does not, and "\\u0660", which it reads
    as 0), and 32 lowercase hex digits."""
    parts = token.split(".") if isinstance(token, str) and len(token) <= 128 else []
    if len(parts) == 3:
        sid, gen, mac = parts
        if (len(sid) == 32 and _is_hex(sid) and _is_generation(gen)
                and len(mac) == 2 * _MAC_OCTETS and _is_hex(mac)):  # fmt: skip
            return sid, int(gen)
    raise ResumeRefused("malformed resume token", "token_invalid")


def verify(secret: bytes | Sequence[bytes], token: str, *, generation: int, identity: str,
           presenter: str, previous: bool = False, oldest: int | None = None,
           ) -> int:  # fmt: skip
    """Check ``token`` against the stored ``generation`` and ``identity`` of its session,
    presented by ``presenter``; raise :class:`ResumeRefused` with the reason if it fails.
    ``secret``: the server's secret, or its secrets (the one it signs with first, then
    the one before, still good for tokens issued with it).  With ``previous`` the token of
    the generation before is good too (the accept that carried the current one may never
    have arrived); with ``oldest``, those of every generation from ``oldest`` on (the
    accepts of several resumes in a row may have been lost).  Returns the token's
    generation."""
    sid, gen = parse(token)
    mac = token.rsplit(".", 1)[1]
    for key in (secret,) if isinstance(secret, bytes) else secret:
        if hmac.compare_digest(mac, _mac(key, sid, gen, identity)):
            break
    else:
        raise ResumeRefused("the resume token does not verify (forged or corrupted)",
                            "token_invalid")  # fmt: skip
    if not hmac.compare_digest(identity, presenter):
        raise ResumeRefused("the resume token belongs to another identity", "wrong_identity")
    if oldest is None:
        oldest = generation - 1 if previous else generation
    if gen < min(oldest, generation):
        raise ResumeRefused("the resume token was used before (each resumes once)",
                            "token_replayed")  # fmt: skip
    if gen > generation:
        raise ResumeRefused("the resume token is newer than the session", "token_invalid")
    return gen


_HEX = frozenset("0123456789abcdef")


def _is_hex(text: str) -> bool:
    return _HEX.issuperset(text)


def _is_generation(text: str) -> bool:
    """ASCII decimal digits, at most 9, no leading zero (but "0" itself)."""
    return (0 < len(text) <= 9 and text.isascii() and text.isdigit()
            and (text[0] != "0" or text == "0"))  # fmt: skip
