"""Ready-made ``authenticate`` callbacks for :func:`sessionlayer.serve`.

Credentials travel in the CN's user data; :func:`sessionlayer.connect` sends
them only inside TLS (or to a loopback address), and these callbacks compare
secrets in constant time (:func:`hmac.compare_digest`), so neither the
network nor the timing of a refusal gives a password away.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import ConnectRequest

__all__ = ["check_passwords", "check_token"]


def _digest(secret: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison's time independent of the
    # lengths of both secrets too.  "surrogatepass": a peer's credentials may hold lone
    # surrogates (JSON "\ud800"), which strict UTF-8 cannot encode; this encoding of them is
    # still one-to-one (no other string encodes to the same octets), so such a secret is
    # just one more that does not match, in the same time.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def check_passwords(
    users: Mapping[str, str], *, user_key: str = "user", password_key: str = "password"
) -> Callable[[ConnectRequest], bool]:
    """Accept a connect request whose credentials name a user of ``users`` with its password.

    ``users`` maps user names to passwords.  An unknown user costs the same
    comparison as a wrong password.
    """
    table = {name: _digest(password) for name, password in users.items()}
    decoy = _digest("\0 no such user \0")

    def authenticate(request: ConnectRequest) -> bool:
        creds = request.credentials or {}
        user = creds.get(user_key, "")
        expected = table.get(user, decoy)
        given = _digest(creds.get(password_key, ""))
        match = hmac.compare_digest(expected, given)  # (always made: no shortcut in time)
        return match and user in table  # (a bool: True only for a user's own password)

    return authenticate


def check_token(token: str, *, key: str = "token") -> Callable[[ConnectRequest], bool]:
    """Accept a connect request whose credentials carry ``token`` under ``key``."""
    expected = _digest(token)

    def authenticate(request: ConnectRequest) -> bool:
        given = _digest((request.credentials or {}).get(key, ""))
        return hmac.compare_digest(expected, given)

    return authenticate
