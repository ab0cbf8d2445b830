"""Prometheus metrics for a session server (the ``metrics`` extra).

``register(server)`` adds a collector that reads the server's state when
Prometheus scrapes: nothing is counted on the data path, so metrics cost
nothing per message.  Requires ``pip install 'sessionlayer[metrics]'``.

Metrics (all prefixed ``sessionlayer_``):

* ``sessions`` (gauge): live sessions, by X.225 state;
* ``sessions_accepted_total``, ``sessions_refused_total{reason}``,
  ``sessions_ended_total{outcome}`` (released / aborted) (counters);
* ``bytes_total{direction}`` and ``messages_total{direction}`` (counters):
  live sessions plus every session that has ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aio.server import Server

__all__ = ["register", "ServerCollector"]


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
        for state, count in sorted(by_state.items()):
            gauge.add_metric([state], count)
        yield gauge
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
