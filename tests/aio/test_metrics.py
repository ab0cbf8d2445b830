"""Prometheus metrics read the server's state at scrape time."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import sessionlayer
from sessionlayer import metrics


def test_metrics_count_sessions_refusals_and_bytes() -> None:
    async def main() -> None:
        async def echo(session: sessionlayer.Session) -> None:
            async for data in session:
                await session.send(data)

        registry = CollectorRegistry()
        async with await sessionlayer.serve(echo, supported={"codec": ["json"]}) as server:
            metrics.register(server, registry)
            session = await sessionlayer.connect("127.0.0.1", server.port)
            await session.send(b"ping")
            assert await session.receive() == b"ping"
            live = generate_latest(registry).decode()
            assert "sessionlayer_sessions{state=" in live
            assert "sessionlayer_sessions_live 1.0" in live
            assert "sessionlayer_messages_total{direction=\"in\"} 1.0" in live
            await session.release()
            with pytest.raises(sessionlayer.ConnectRefused):
                await sessionlayer.connect("127.0.0.1", server.port, offers={"codec": ["xml"]})
        # Leaving the block waited for every handler: the totals are final.
        text = generate_latest(registry).decode()
        # (the gauge goes back to 0: before, it vanished, and a sum of it was no data)
        assert 'sessionlayer_sessions{state="STA713"} 0.0' in text
        assert "sessionlayer_sessions_live 0.0" in text
        assert "sessionlayer_sessions_accepted_total 1.0" in text
        assert 'sessionlayer_sessions_refused_total{reason="user_data"} 1.0' in text
        assert 'sessionlayer_sessions_ended_total{outcome="released"} 1.0' in text
        in_bytes = [line for line in text.splitlines()
                    if line.startswith('sessionlayer_bytes_total{direction="in"}')]  # fmt: skip
        assert float(in_bytes[0].split()[-1]) > 0

    asyncio.run(asyncio.wait_for(main(), 20))
