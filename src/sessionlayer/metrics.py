"""Prometheus metrics for a session server (the ``metrics`` extra).

``register(server)`` adds a collector that reads the server's state when
Prometheus scrapes: nothing is counted on the data path, so metrics cost
nothing per message.  Requires ``pip install 'sessionlayer[metrics]'``.

Metrics (all prefixed ``sessionlayer_``):

* ``sessions`` (gauge): live sessions, by X.225 state;
* ``sessions_accepted_total``, ``sessions_refused_total{reason}``,
  ``sessions_ended_total{outcome}`` (released / aborted) (counters);
* ``bytes_total{direction}`` and ``messages_total{direction}`` (counters):
  live sessions plus every session that has ended;
* the tunnel's and RPC's (:class:`AppCollector`, registered by ``sessionlayer serve``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aio.server import Server

__all__ = ["register", "ServerCollector", "AppCollector"]


class ServerCollector:
    """A ``prometheus_client`` collector over one :class:`~sessionlayer.Server`."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.server.stats
        live = self.server.sessions
        by_state = Counter(info.state for info in live)
        gauge = GaugeMetricFamily(
            "sessionlayer_sessions", "Live sessions by X.225 state", labels=["state"]
        )
        by_state.setdefault("STA713", 0)  # (the series stays, at 0, when none is live)
        for state, count in sorted(by_state.items()):
            gauge.add_metric([state], count)
        yield gauge
        yield GaugeMetricFamily("sessionlayer_sessions_live", "Live sessions, in all",
                                value=len(live))  # fmt: skip
        yield CounterMetricFamily(
            "sessionlayer_sessions_accepted", "Sessions accepted", value=stats.accepted
        )
        refused = CounterMetricFamily(
            "sessionlayer_sessions_refused", "Connect requests refused", labels=["reason"]
        )
        for reason, count in sorted(stats.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        ended = CounterMetricFamily(
            "sessionlayer_sessions_ended", "Sessions ended", labels=["outcome"]
        )
        for outcome, count in sorted(stats.ended.items()):
            ended.add_metric([outcome], count)
        yield ended
        octets = CounterMetricFamily(
            "sessionlayer_bytes", "Octets on TCP, both directions", labels=["direction"]
        )
        octets.add_metric(["in"], stats.bytes_in + sum(i.bytes_in for i in live))
        octets.add_metric(["out"], stats.bytes_out + sum(i.bytes_out for i in live))
        yield octets
        messages = CounterMetricFamily(
            "sessionlayer_messages", "S-DATA messages", labels=["direction"]
        )
        messages.add_metric(["in"], stats.messages_in + sum(i.messages_in for i in live))
        messages.add_metric(["out"], stats.messages_out + sum(i.messages_out for i in live))
        yield messages


def register(server: Server, registry: Any = None) -> ServerCollector:
    """Register a collector for ``server`` (default: prometheus_client's REGISTRY)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:  # pragma: no cover - depends on the extra
        raise ImportError(
            "sessionlayer.metrics needs prometheus_client: pip install 'sessionlayer[metrics]'"
        ) from None
    collector = ServerCollector(server)
    (registry or REGISTRY).register(collector)
    return collector


class AppCollector:
    """A collector over the tunnel and RPC services of ``sessionlayer serve`` (either may
    be None), read at scrape time like :class:`ServerCollector`:

    * ``sessionlayer_tunnel_streams`` (gauge): tunnelled connections open now;
    * ``sessionlayer_tunnel_streams_opened_total``, ``..._failed_total`` (refused, or the
      target unreachable), ``..._reset_total`` (ended by a reset);
    * ``sessionlayer_tunnel_bytes_total{direction}``: ``to_target`` / ``from_target``;
    * ``sessionlayer_rpc_calls_total{outcome}``: ``ok``, ``error``, ``timeout``,
      ``cancelled``; ``sessionlayer_rpc_duplicates_total``; ``sessionlayer_rpc_running``.
    """

    def __init__(self, tunnel: Any = None, rpc: Any = None) -> None:
        self.tunnel = tunnel
        self.rpc = rpc

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        if self.tunnel is not None:
            t = self.tunnel.stats
            yield GaugeMetricFamily("sessionlayer_tunnel_streams",
                                    "Tunnelled TCP connections open", value=t.streams)
            for name, value, text in (("opened", t.opened, "opened"),
                                      ("failed", t.failed, "refused or unreachable"),
                                      ("reset", t.resets, "ended by a reset")):  # fmt: skip
                yield CounterMetricFamily(f"sessionlayer_tunnel_streams_{name}",
                                          f"Tunnelled connections {text}", value=value)
            octets = CounterMetricFamily("sessionlayer_tunnel_bytes", "Octets tunnelled",
                                         labels=["direction"])  # fmt: skip
            octets.add_metric(["to_target"], t.bytes_received)  # (from the clients)
            octets.add_metric(["from_target"], t.bytes_sent)
            yield octets
        if self.rpc is not None:
            r = self.rpc.stats
            calls = CounterMetricFamily("sessionlayer_rpc_calls", "RPC calls answered",
                                        labels=["outcome"])  # fmt: skip
            for outcome, value in (("ok", r.ok), ("error", r.errors), ("timeout", r.timeouts),
                                   ("cancelled", r.cancelled)):  # fmt: skip
                calls.add_metric([outcome], value)
            yield calls
            yield CounterMetricFamily("sessionlayer_rpc_duplicates",
                                      "RPC call ids seen again (not run)", value=r.duplicates)
            yield GaugeMetricFamily("sessionlayer_rpc_running", "RPC calls running",
                                    value=r.running)
