"""``connect()``: open a session to a responder."""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..agent import Hello, Options, Rejection, SessionAgent, Welcome
from ..agent.hello import is_rejection
from ..errors import (
    AbortReason,
    ConnectRefused,
    DecodeError,
    LocalError,
    RefuseReason,
    SessionAborted,
    SessionLayerError,
)
from ..machine import DEFAULT_FUNCTIONAL_UNITS, SessionConfig
from ..machine import events as ev
from ..machine.negotiation import CN_DATA_MAX
from ..recovery import Journal
from ..spdu.codes import FunctionalUnit
from ..spdu.types import ConnectionId
from . import fast_connect
from .checks import check_addresses, check_choices, check_port, check_tls
from .connection import Connection
from .deadline import Deadline
from .endpoint import Endpoint, check_kinds
from .reconnect import Reconnector
from .session import Session
from .sockets import TlsHandshakeReset, is_loopback

__all__ = ["connect", "new_session_id", "RESUMABLE_CONFIG"]

log = logging.getLogger("sessionlayer")
#: What ``connect()`` uses when given none (both are frozen: one object for every call).
_OPTIONS = Options()
_CONFIG = SessionConfig()
#: The configuration of a resumable session when none is given: the default functional
#: units and symmetric synchronize (version 2), which replaces minor synchronize: each side
#: sets the sync points that acknowledge its data on a flow of its own (docs/recovery.md).
RESUMABLE_CONFIG = SessionConfig(
    functional_units=DEFAULT_FUNCTIONAL_UNITS | FunctionalUnit.SYMMETRIC_SYNC
)


def new_session_id() -> bytes:
    """16 random octets from :mod:`secrets`: unique and unguessable."""
    return secrets.token_bytes(16)


_PROTOCOL_ERROR = AbortReason.PROTOCOL_ERROR
_DEFAULT_CONNECT_DATA = SessionConfig().max_connect_data


def _check_arguments(port: Any, options: Any, config: Any, offers: Any, credentials: Any,
                     data: Any, user_data: Any, *tsels: Any) -> None:  # fmt: skip
    """connect()'s arguments of the wrong kind, said before anything is opened (TypeError,
    ValueError for a port out of range or an empty name; aio/checks.py)."""
    if type(port) is not int or not 0 < port < 65536:  # (inline: a setup's every call counts)
        check_port(port)
    check_kinds(options, config)
    if offers is not None:
        check_choices("offers", offers)
    if credentials is not None and not (isinstance(credentials, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in credentials.items())):
        raise TypeError("credentials must map names to strings")
    for name, value in (("data", data), ("user_data", user_data), ("calling_tsel", tsels[0]),
                        ("called_tsel", tsels[1])):  # fmt: skip
        if value is not None:
            try:
                memoryview(value)  # (a buffer: bytes, bytearray, ...; not a str, not an int)
            except TypeError:
                raise TypeError(f"{name} must be bytes, not {type(value).__name__}") from None


async def connect(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    credentials: Mapping[str, str] | None = None,
    offers: Mapping[str, Sequence[str]] | None = None,
    data: bytes = b"",
    user_data: bytes | None = None,
    config: SessionConfig | None = None,
    options: Options | None = None,
    calling_tsel: bytes | None = None,
    called_tsel: bytes | None = None,
    trace: Callable[[str, bytes], None] | None = None,
    insecure_credentials: bool = False,
    addresses: Sequence[tuple[str, int]] = (),
) -> Session:
    """Open a session (S-CONNECT) to ``host:port`` and return it once accepted.

    Between sessionlayer peers the CN carries a hello: ``offers`` (for each
    application parameter, the values this side supports in preference
    order), ``credentials`` for the responder's authentication callback, and
    ``data`` for the responder's handler.  To talk to another OSI stack pass
    ``user_data`` instead: it is sent as the CN user data, untouched (for
    example the presentation/ACSE bytes an MMS client sends), and the AC's
    user data is in ``session.peer_data``.  ``calling_tsel``/``called_tsel``
    are the transport selectors of the COTP CR (libiec61850 uses ``00 01``).
    ``trace("in" | "out", data)`` sees every chunk read from or written to TCP.
    ``credentials`` are only sent inside TLS or to loopback addresses (``host`` and each
    of ``addresses``), unless ``insecure_credentials=True`` says otherwise (a
    :class:`LocalError` if not).

    Between sessionlayer peers the session is resumable (``options.resume``, see
    docs/recovery.md): when its connection is lost it reconnects to ``host:port`` and then
    each of ``addresses`` in turn, and carries on.

    Raises :class:`ConnectRefused` (with the RF reason) when refused,
    :class:`SessionAborted` when the peer aborts, :class:`TimeoutError`
    after ``options.connect_timeout`` / ``options.handshake_timeout``, :class:`ssl.SSLError`,
    and the :class:`OSError` of a TCP connection that cannot be made
    (:class:`ConnectionRefusedError`, :class:`socket.gaierror`, ...).
    """
    _check_arguments(port, options, config, offers, credentials, data, user_data,
                     calling_tsel, called_tsel)  # fmt: skip
    if tls is not None:
        check_tls(tls, "client")
    if addresses:
        addresses = check_addresses(addresses)
    cleartext = credentials is not None and tls is None and not insecure_credentials
    if cleartext:  # (every address a resume may try too: each gets the credentials)
        for name in [host, *(each[0] for each in addresses)]:
            if not is_loopback(name):
                raise LocalError(
                    f"credentials would cross the network to {name} in clear text: pass"
                    " tls=... (or insecure_credentials=True)"
                )
    if options is None:
        options = _OPTIONS
    recovery = options.resume and user_data is None
    if config is None:
        # Acknowledgements need sync points both ways: the default for a resumable session
        # adds symmetric synchronize (a configuration given is taken as it is).
        config = RESUMABLE_CONFIG if recovery else _CONFIG
    recovery = recovery and config.functional_units & FunctionalUnit.SYMMETRIC_SYNC != 0
    hello = None  # (made before any socket: a mistake in it leaves nothing open)
    if user_data is None:
        hello = Hello(
            offers={k: list(v) for k, v in (offers or {}).items()},
            credentials=dict(credentials) if credentials is not None else None,
            data=data,
            recovery=recovery,
            max_tsdu=options.max_tsdu_size,
        )
    loop = asyncio.get_running_loop()
    agent = SessionAgent("initiator", config, options)
    secure = tls is not None
    fast = options.fast_connect and user_data is None and fast_connect.is_known(host, port, secure)
    if fast:
        agent.fast_connect()  # the CN goes right behind the CR: one round trip
    sid = new_session_id()

    endpoint = _endpoint(loop, options, (calling_tsel, called_tsel), trace, tls is not None)

    def factory() -> Connection:
        return Connection(agent, endpoint)

    deadline = Deadline(loop, options.connect_timeout)  # (cancelled on every way out)
    try:
        try:
            _, protocol = await loop.create_connection(
                factory,
                host,
                port,
                ssl=tls,
                server_hostname=server_hostname if tls is not None else None,
            )
        except BaseException as exc:
            deadline.ended(exc)  # TimeoutError, if the time ran out
            if tls is not None and type(exc) in (ConnectionResetError, ConnectionAbortedError):
                raise TlsHandshakeReset(errno.ECONNRESET, "the connection was closed in"
                                        " the TLS handshake (does the server use TLS?)"
                                        ) from exc  # fmt: skip
            raise
        deadline.ended(None)
        session = Session(protocol, sid.hex())
        try:
            cid = ConnectionId(common_ref=sid)
            deadline.then(options.handshake_timeout)
            try:  # (the CN goes out as soon as COTP CC came, in the read that brought it)
                confirm = await protocol.open(lambda m: agent.connect(user_data, cid, hello))
            except BaseException as exc:
                deadline.ended(exc)  # TimeoutError, if the time ran out
                if fast and agent.rfc.tpdu_size is None:  # (no CC came) plain from now on
                    fast_connect.forget(host, port, secure)
                if isinstance(exc, ConnectionError | SessionAborted):
                    failed = protocol.failure if isinstance(exc, ConnectionError) else exc
                    if isinstance(exc, SessionAborted) and (
                            exc.by_peer or agent.rfc.tpdu_size is not None):  # fmt: skip
                        raise  # (the COTP CC came: an RFC 1006 peer that aborted)
                    if isinstance(failed, SessionAborted) and failed.reason & _PROTOCOL_ERROR:
                        why = str(failed).removeprefix("session aborted: ")
                        raise SessionAborted(  # (an HTTP server, a TLS one, a broken stack)
                            f"the responder's answer is not RFC 1006 / COTP ({why}): is it an"
                            " OSI or sessionlayer server, does it expect TLS?", failed.reason,
                        ) from None  # fmt: skip
                    raise _closed_before_cc(tls) from None
                raise
            deadline.ended(None)
            if isinstance(confirm, ev.RefuseConfirm):
                protocol.close()
                sent = hello.encode() if hello is not None else user_data
                raise _refused(confirm, len(sent or b""))
            welcome = _welcome(session, protocol, confirm)
            if options.fast_connect and user_data is None:
                fast_connect.learn(host, port, secure, welcome is not None and welcome.fast)
            if recovery and welcome is not None and welcome.token is not None:
                reconnector = Reconnector(
                    protocol, [(host, port), *addresses], tls=tls,
                    server_hostname=server_hostname, config=config, options=options,
                    credentials=credentials, offers=offers or {}, connection_id=cid,
                )  # fmt: skip
                link = protocol.enable_recovery(Journal(options.retention))
                link.token = welcome.token
                link.on_lost = reconnector.start
                link.on_over = reconnector.stop
        except SessionAborted as exc:
            protocol.abort()
            if exc.reason == AbortReason.TRANSPORT_RELEASED and not exc.by_peer:  # TCP closed
                if agent.rfc.tpdu_size is None:  # (a fast connect: the CN went before a CC)
                    raise _closed_before_cc(tls) from None
                raise SessionAborted(
                    "the responder closed the connection without answering the CN (it may"
                    " not accept the connect parameters: versions, functional units,"
                    " selectors, user data size)"
                ) from None
            raise
        except TimeoutError:
            _give_up(protocol)
            raise
        except (SessionLayerError, ConnectionError):
            protocol.abort()
            raise
        except BaseException as exc:  # not a documented outcome: a bug, or a cancellation
            if isinstance(exc, Exception):
                protocol.abort()
                raise SessionAborted(f"connect failed: {exc!r}") from exc
            _give_up(protocol)
            raise
    finally:
        deadline.cancel()
    if log.isEnabledFor(logging.DEBUG):  # (session.log makes an adapter: only when needed)
        session.log.debug("session %s connected to %s", session.id, protocol.peer)
    return session


_last: Endpoint | None = None  #: the Endpoint of the last connect()


def _endpoint(loop: asyncio.AbstractEventLoop, options: Options,
              tsaps: tuple[bytes | None, bytes | None],
              tap: Callable[[str, bytes], None] | None, tls: bool) -> Endpoint:  # fmt: skip
    """An Endpoint for one client connection: the last connect()'s again when it was for
    the same loop, options, selectors and kind of transport, without a tap (what a client
    opening many sessions does: one object for them all, not one per session)."""
    global _last
    ep = _last
    if tap is None and ep is not None and ep.loop is loop and ep.options is options and (
        ep.tsaps == tsaps and ep.tls is tls
    ):
        return ep
    endpoint = Endpoint(options, tsaps=tsaps, tap=tap, tls=tls)
    if tap is None:
        _last = endpoint
    return endpoint


def _give_up(protocol: Connection) -> None:
    """connect() gives up (cancelled, or out of time) once its CN may have reached the
    responder, its AC even: an AB goes out first, then the connection closes, so that the
    server does not keep the session (waiting for a resume nobody can make: the client
    never took its token) until its resume_timeout.  A reset would look like a lost
    connection.  (Before the CN: no AB, the machine has nothing to abort.)"""
    protocol.abort_session(SessionAborted("the connect was given up", AbortReason.USER_ABORT))
    protocol.close()


def _closed_before_cc(tls: ssl.SSLContext | None) -> SessionAborted:
    """The responder closed the connection before any COTP CC: in words, with what most
    often causes it (a TLS server read our clear CR as a broken TLS hello; a mutual TLS
    server did not take our certificate, or our lack of one)."""
    hint = ("does it expect TLS?" if tls is None else
            "does it want a client certificate, or another one?")  # fmt: skip
    return SessionAborted(
        f"the responder closed the connection without answering the COTP CR ({hint})")


def _refused(event: ev.RefuseConfirm, sent: int = 0) -> ConnectRefused:
    """The RF as a ConnectRefused; ``sent``: octets of CN user data (the hello's, or the
    raw user data), named when they may be why (0x86 after connect data overflow)."""
    text = ""
    if is_rejection(event.user_data):
        try:
            text = Rejection.decode(bytes(event.user_data or b"")).message
        except DecodeError:
            text = ""
    reason = int(event.reason) if event.reason is not None else 0
    try:
        name = RefuseReason(reason).name.lower().replace("_", " ")
    except ValueError:
        name = f"reason {event.reason}"
    more = ""
    if reason == RefuseReason.IMPLEMENTATION_RESTRICTION and sent > CN_DATA_MAX:
        more = (f": {sent} octets of connect user data may be more than the responder"
                " collects (a sessionlayer server takes up to SessionConfig.max_connect_data,"
                f" {_DEFAULT_CONNECT_DATA} by default)")  # fmt: skip
    return ConnectRefused(
        f"session refused ({name}){': ' + text if text else more}", reason, event.user_data,
        text=text,
    )


def _welcome(session: Session, protocol: Connection,
             confirm: ev.ConnectConfirm) -> Welcome | None:  # fmt: skip
    """Take on what the responder said in its AC; a malformed welcome aborts."""
    try:
        welcome = protocol.agent.confirmed(confirm)
    except DecodeError as exc:
        session.abort()
        raise SessionAborted(f"malformed accept from the responder: {exc}") from None
    if welcome is not None and welcome.session_id is not None:
        protocol.id = welcome.session_id  # the responder's name for it, as in its logs
    protocol.start_liveness()
    return welcome


