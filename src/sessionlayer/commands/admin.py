"""``sessionlayer serve --admin`` and ``sessionlayer relay --admin``: Prometheus ``/metrics``
and a JSON ``/sessions`` list, served by aiohttp (the ``admin`` extra) on an address of its
own, loopback by default; with ``--admin-token FILE`` each request must carry
``Authorization: Bearer TOKEN`` (what Prometheus's ``authorization: {credentials_file:
FILE}`` sends), else 401."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..aio import Server
from ..aio.sockets import host_port, is_loopback, unreachable
from . import CommandError

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = ["start_admin", "sessions_json", "start_relay_admin", "relay_json"]


def sessions_json(server: Server, progress: Callable[[str], dict[str, Any] | None]) -> Any:
    """What ``/sessions`` answers: one object per live session (detached ones too)."""
    rows = []
    for info in server.sessions:
        row = dataclasses.asdict(info)
        peer = info.peer
        row["peer"] = host_port(peer[0], peer[1]) if isinstance(peer, tuple) else None
        row["progress"] = progress(info.id)
        rows.append(row)
    stats = server.stats
    return {
        "sessions": rows,
        "stats": {
            "accepted": stats.accepted, "interrupted": stats.interrupted,
            "resumed": dict(stats.resumed), "expired": stats.expired,
            "refused": dict(stats.refused), "resume_refused": dict(stats.resume_refused),
        },
    }  # fmt: skip


async def start_admin(server: Server, host: str, port: int,
                      progress: Callable[[str], dict[str, Any] | None],
                      collectors: Sequence[Any] = (), token: str | None = None,
                      ) -> Any:  # fmt: skip
    """Serve the admin endpoints; returns the aiohttp runner (``await runner.cleanup()``).
    ``collectors``: more Prometheus collectors for ``/metrics`` (the services');
    ``token``: the bearer token every request must carry (None: none asked for)."""
    from ..metrics import register

    def collector(registry: Any) -> None:
        register(server, registry=registry)
        for extra in collectors:
            registry.register(extra)

    return await _serve(lambda: sessions_json(server, progress), collector, host, port, token)


def relay_json(relay: Relay) -> Any:
    """What a relay's ``/sessions`` answers: each client connection with both legs."""
    stats = relay.stats
    return {
        "kind": "relay",
        "upstream": host_port(relay.upstream[0], relay.upstream[1]),
        "sessions": [info.to_dict() for info in relay.sessions],
        "stats": {
            "connections": stats.connections, "relayed": stats.relayed,
            "opened": stats.opened,
            "rejected": dict(stats.rejected), "refused": dict(stats.refused),
            "ended": dict(stats.ended), "handshakes": relay.handshakes,
            # (of the sessions that are over, by leg and direction: "client in", ...)
            "octets": {f"{leg} {way}": n for (leg, way), n in sorted(stats.octets.items())},
        },
    }  # fmt: skip


class _RelayCollector:
    """``sessionlayer_relay_*`` metrics, read from the relay when Prometheus scrapes."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        relay, stats = self.relay, self.relay.stats
        live = relay.sessions
        phases = GaugeMetricFamily("sessionlayer_relay_sessions",
                                   "Client connections by phase", labels=["phase"])  # fmt: skip
        for phase in ("handshake", "connecting", "open", "ended"):
            phases.add_metric([phase], sum(1 for info in live if info.phase == phase))
        yield phases
        yield CounterMetricFamily("sessionlayer_relay_connections",
                                  "Client connections accepted", value=stats.connections)
        yield CounterMetricFamily("sessionlayer_relay_relayed",
                                  "CNs relayed to the upstream", value=stats.relayed)
        yield CounterMetricFamily("sessionlayer_relay_opened",
                                  "Relayed sessions over that had reached data transfer"
                                  " (their AC relayed)", value=stats.opened)  # fmt: skip
        for name, counter, label in (("rejected", stats.rejected, "why"),
                                     ("refused", stats.refused, "reason"),
                                     ("ended", stats.ended, "outcome")):  # fmt: skip
            family = CounterMetricFamily(f"sessionlayer_relay_{name}",
                                         f"Relay connections {name}", labels=[label])
            for key, count in sorted(counter.items()):
                family.add_metric([key], count)
            yield family
        octets = CounterMetricFamily("sessionlayer_relay_bytes", "Octets on each leg",
                                     labels=["leg", "direction"])  # fmt: skip
        for leg in ("client", "upstream"):
            legs = [getattr(info, leg) for info in live if getattr(info, leg) is not None]
            octets.add_metric([leg, "in"], stats.octets[(leg, "in")]
                              + sum(x.bytes_in for x in legs))  # fmt: skip
            octets.add_metric([leg, "out"], stats.octets[(leg, "out")]
                              + sum(x.bytes_out for x in legs))  # fmt: skip
        yield octets


async def start_relay_admin(relay: Relay, host: str, port: int,
                            token: str | None = None) -> Any:  # fmt: skip
    """``sessionlayer relay --admin``: the relay's ``/sessions`` and ``/metrics``."""

    def collector(registry: Any) -> None:
        registry.register(_RelayCollector(relay))

    return await _serve(lambda: relay_json(relay), collector, host, port, token)


async def _serve(sessions_doc: Callable[[], Any], collector: Callable[[Any], None],
                 host: str, port: int, token: str | None) -> Any:  # fmt: skip
    """An aiohttp app with ``/metrics`` and ``/sessions``, listening on host:port; with
    ``token``, a request without ``Authorization: Bearer <token>`` gets 401."""
    try:
        from aiohttp import web
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST
    except ImportError:
        raise CommandError(
            "--admin needs the admin extra: pip install 'sessionlayer[admin]'"
        ) from None
    registry = CollectorRegistry()
    collector(registry)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def sessions(_: web.Request) -> web.Response:
        return web.json_response(sessions_doc())

    expected = None if token is None else token.encode()

    @web.middleware
    async def bearer(request: web.Request, handler: Any) -> Any:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if expected is not None and not (scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode("utf-8", "replace"), expected)):  # (RFC 7235: any case)
            return web.Response(status=401, text="a bearer token is needed\n",
                                headers={"WWW-Authenticate": 'Bearer realm="sessionlayer"'})
        return await handler(request)

    app = web.Application(middlewares=[bearer])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/sessions", sessions)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE)
    await runner.setup()
    factory = runner.server
    assert factory is not None
    guarded = _Guarded(factory)
    try:
        listener = await asyncio.get_running_loop().create_server(guarded.protocol, host, port)
    except OSError as exc:
        await runner.cleanup()
        where = host_port(host, port)
        raise CommandError(f"cannot serve --admin on {where}: {unreachable(exc)}") from None
    admin = _Admin(runner, listener, guarded)
    if token is None and not is_loopback(host):
        logging.getLogger("sessionlayer").warning(
            "--admin %s has no --admin-token: whoever reaches it sees every session",
            host_port(host, port))  # fmt: skip
    return admin


#: Connections to the admin endpoint at once: past it, a new one is closed at once (it
#: holds a descriptor the session listener needs).
MAX_CONNECTIONS = 64
#: The longest an admin connection lives, whatever it does (a slow client sending one
#: header line every few seconds included); a scraper connects again.
LIFETIME = 30.0
#: Idle time between two requests on one connection (aiohttp's keep-alive).
KEEPALIVE = 5.0


class _Admin:
    """What ``_serve`` returns: ``addresses`` and ``cleanup()``, as aiohttp's runner had."""

    def __init__(self, runner: Any, listener: asyncio.Server, guarded: _Guarded) -> None:
        self.runner, self.listener, self.guarded = runner, listener, guarded

    @property
    def addresses(self) -> list[Any]:
        return [sock.getsockname() for sock in self.listener.sockets]

    async def cleanup(self) -> None:
        self.listener.close()
        for transport in list(self.guarded.open):
            transport.abort()
        await self.runner.cleanup()


class _Guarded:
    """aiohttp's protocol factory behind two bounds: ``MAX_CONNECTIONS`` at once, and
    ``LIFETIME`` per connection (aiohttp itself has no deadline for a request's head)."""

    def __init__(self, factory: Callable[[], Any], max_connections: int = MAX_CONNECTIONS,
                 lifetime: float = LIFETIME) -> None:  # fmt: skip
        self.factory = factory
        self.max_connections = max_connections
        self.lifetime = lifetime
        self.open: set[asyncio.Transport] = set()
        self.refused = 0  #: connections closed at once: too many open

    def protocol(self) -> asyncio.Protocol:
        return _GuardedProtocol(self, self.factory())


class _GuardedProtocol(asyncio.Protocol):
    """One admin connection: aiohttp's handler inside, our limits around it."""

    def __init__(self, guard: _Guarded, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # (a TCP server's)
        guard = self.guard
        if len(guard.open) >= guard.max_connections:
            guard.refused += 1
            transport.abort()
            return
        self.transport = transport
        guard.open.add(transport)
        self.timer = asyncio.get_running_loop().call_later(guard.lifetime, transport.abort)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.transport is not None:
            return bool(self.inner.eof_received())
        return None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.guard.open.discard(self.transport)
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)
