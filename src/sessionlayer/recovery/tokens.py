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
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from ..errors import ResumeRefused

__all__ = ["issue", "parse", "verify", "identity_of", "ANONYMOUS"]

ANONYMOUS = "anon"  #: the identity of a session opened with no credentials or certificate
_MAC_OCTETS = 16


def identity_of(credentials: Mapping[str, str] | None, certificate: bytes | None) -> str:
    """Who opened a session: the SHA-256 of the client certificate (DER) under mutual TLS,
    else of the credentials (canonical JSON), else :data:`ANONYMOUS`.  Neither is kept in
    the clear."""
    if certificate:
        return "cert:" + hashlib.sha256(certificate).hexdigest()
    if credentials is not None:
        canonical = json.dumps(dict(credentials), sort_keys=True, separators=(",", ":"))
        return "cred:" + hashlib.sha256(canonical.encode()).hexdigest()
    return ANONYMOUS


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


def verify(secret: bytes, token: str, *, generation: int, identity: str,
           presenter: str, previous: bool = False) -> int:  # fmt: skip
    """Check ``token`` against the stored ``generation`` and ``identity`` of its session,
    presented by ``presenter``; raise :class:`ResumeRefused` with the reason if it fails.
    With ``previous`` the token of the generation before is good too (the accept that
    carried the current one may never have arrived).  Returns the token's generation."""
    sid, gen = parse(token)
    mac = token.rsplit(".", 1)[1]
    if not hmac.compare_digest(mac, _mac(secret, sid, gen, identity)):
        raise ResumeRefused("the resume token does not verify (forged or corrupted)",
                            "token_invalid")  # fmt: skip
    if not hmac.compare_digest(identity, presenter):
        raise ResumeRefused("the resume token belongs to another identity", "wrong_identity")
    if gen < generation and not (previous and gen == generation - 1):
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
