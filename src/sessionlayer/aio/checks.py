"""What ``connect()`` and ``serve()`` check of their arguments before anything is opened:
a mistake is a TypeError (the wrong kind of value) or a ValueError (out of range) naming
the argument, at the call, instead of an obscure failure later (on a handshake, in a
resume, in the responder's negotiation)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_port", "check_address", "check_addresses", "check_tls", "check_choices"]


def check_port(value: Any, name: str = "port", *, lowest: int = 1) -> None:
    """A TCP port: an int from ``lowest`` (0 for a listener: any free port) to 65535."""
    if type(value) is not int or not lowest <= value <= 65535:
        raise ValueError(f"{name} must be an int from {lowest} to 65535, not {value!r}")


def check_addresses(addresses: Any) -> list[tuple[str, int]]:
    """connect()'s further addresses: (host, port) pairs, each port 1..65535; as tuples."""
    if isinstance(addresses, str | bytes) or not isinstance(addresses, Sequence):
        raise TypeError(f"addresses must be a list of (host, port) pairs, not {addresses!r}")
    return [check_address(each, f"addresses[{i}]") for i, each in enumerate(addresses)]


def check_address(address: Any, name: str) -> tuple[str, int]:
    """A (host, port) pair: a non-empty host name, a port 1..65535; as a tuple."""
    if not (isinstance(address, tuple | list) and len(address) == 2
            and isinstance(address[0], str) and address[0]):  # fmt: skip
        raise ValueError(f"{name} must be a (host, port) pair, not {address!r}")
    check_port(address[1], f"the port of {name}")
    return address[0], address[1]


def check_tls(tls: Any, side: str) -> None:
    """An :class:`ssl.SSLContext` for this ``side`` ("client" or "server"): one made for the
    other side fails every TLS handshake, so it is refused here."""
    if tls is None:
        return
    if not isinstance(tls, ssl.SSLContext):
        raise TypeError(f"tls must be an ssl.SSLContext, not {type(tls).__name__}")
    if side == "server" and tls.protocol == ssl.PROTOCOL_TLS_CLIENT:
        raise ValueError(
            "tls is a client-side context (PROTOCOL_TLS_CLIENT, what"
            " ssl.create_default_context() makes): a server needs one for its side,"
            " ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) with its certificate loaded"
        )
    if side == "client" and tls.protocol == ssl.PROTOCOL_TLS_SERVER:
        raise ValueError(
            "tls is a server-side context (PROTOCOL_TLS_SERVER): connect() needs a client"
            " one, ssl.create_default_context()"
        )


def check_choices(name: str, choices: Any) -> None:
    """``offers`` / ``supported``: each application parameter's name (a non-empty str)
    mapped to a non-empty list of non-empty strings (a str alone is not a list: "json"
    would be the values "j", "s", "o", "n")."""
    if choices is None:
        return
    if not isinstance(choices, Mapping):
        raise TypeError(f"{name} must map each parameter name to a list of strings, not"
                        f" {type(choices).__name__}")  # fmt: skip
    for key, values in choices.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}: a parameter name is a str, not {key!r}")
        if not key:
            raise ValueError(f"{name}: a parameter name must not be empty")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not all(
            isinstance(v, str) for v in values
        ):
            raise TypeError(f"{name}[{key!r}] must be a list of strings, not {values!r}")
        if not values or not all(values):
            raise ValueError(f"{name}[{key!r}] must list at least one value, none of them"
                             f" empty, not {list(values)!r}")  # fmt: skip
