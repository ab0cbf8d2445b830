"""``sessionlayer serve --admin`` and ``sessionlayer relay --admin``: Prometheus ``/metrics``
and a JSON ``/sessions`` list, served by aiohttp (the ``admin`` extra) on an address of its
own, loopback by default; with ``--admin-token FILE`` each request must carry
``Authorization: Bearer TOKEN`` (what Prometheus's ``authorization: {credentials_file:
FILE}`` sends), else 401."""

from __future__ import annotations

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
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        where = host_port(host, port)
        raise CommandError(f"cannot serve --admin on {where}: {unreachable(exc)}") from None
    if token is None and not is_loopback(host):
        logging.getLogger("sessionlayer").warning(
            "--admin %s has no --admin-token: whoever reaches it sees every session",
            host_port(host, port))  # fmt: skip
    return runner
