"""TLS contexts from the command line: the listening side (``serve``, ``relay``) and the
relay's upstream leg."""

from __future__ import annotations

import argparse
import ssl

from . import CommandError, readable_file, secret_file

__all__ = ["server_context", "upstream_context"]


def server_context(ns: argparse.Namespace) -> ssl.SSLContext | None:
    """``--tls-cert``, ``--tls-key`` and ``--client-ca`` (mutual TLS), or None.

    No TLS 1.3 session tickets are sent (``num_tickets = 0``): libiec61850's TLS client
    (mbedtls) takes the ticket that follows the handshake for a failed read
    (-0x7B00) and drops the connection.  Nothing of ours resumes TLS sessions."""
    if not ns.tls_cert and not ns.tls_key:
        if ns.client_ca:
            raise CommandError("--client-ca needs --tls-cert and --tls-key")
        return None
    if not ns.tls_cert or not ns.tls_key:
        raise CommandError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.num_tickets = 0
    cert, key = readable_file(ns.tls_cert, "--tls-cert"), secret_file(ns.tls_key, "--tls-key")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise CommandError(f"--tls-cert {cert} / --tls-key {key}: {exc.reason or exc}") from None
    if ns.client_ca:
        try:
            context.load_verify_locations(readable_file(ns.client_ca, "--client-ca"))
        except ssl.SSLError as exc:
            raise CommandError(f"--client-ca {ns.client_ca}: {exc.reason or exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def upstream_context(ns: argparse.Namespace) -> ssl.SSLContext | None:
    """``--upstream-tls`` with ``--upstream-ca`` (that file's CAs only, else the system's)
    and ``--upstream-cert`` / ``--upstream-key`` (a client certificate, for an upstream
    that asks for one: IEC 62351-3 servers do), or None."""
    if not ns.upstream_tls:
        given = [name for name, value in (("--upstream-ca", ns.upstream_ca),
                 ("--upstream-name", ns.upstream_name), ("--upstream-cert", ns.upstream_cert),
                 ("--upstream-key", ns.upstream_key)) if value]  # fmt: skip
        if given:
            raise CommandError(f"{' and '.join(given)} need{'s' * (len(given) == 1)}"
                               " --upstream-tls")  # fmt: skip
        return None
    if bool(ns.upstream_cert) != bool(ns.upstream_key):
        raise CommandError("--upstream-cert and --upstream-key go together")
    cafile = readable_file(ns.upstream_ca, "--upstream-ca") if ns.upstream_ca else None
    try:  # (cafile=: that file only; load_verify_locations added it to the system's CAs)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except ssl.SSLError as exc:
        raise CommandError(f"--upstream-ca: {exc.reason or exc}") from None
    if ns.upstream_cert:
        cert = readable_file(ns.upstream_cert, "--upstream-cert")
        key = secret_file(ns.upstream_key, "--upstream-key")
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise CommandError(f"--upstream-cert {cert} / --upstream-key {key}:"
                               f" {exc.reason or exc}") from None  # fmt: skip
    return context
