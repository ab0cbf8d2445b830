"""libiec61850's MMS client -> the relay -> libiec61850's MMS server, all real, on loopback.

Both C peers run in processes of their own (pyiec61850-ng, test-only); the relay runs in
the test's event loop.  One association: connect, read a float, read a data set whose
response is ~45 KiB (six 8192-octet COTP DTs on each leg), write a value and read it back,
release; then an abort from the client and one from the server's side.  The relay's
``on_spdu`` log shows what crossed each leg.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.relay.conftest import MmsClientProcess, MmsServer, run_mms_client
from tests.relay.helpers import run

from sessionlayer.relay import Relay, RelayOptions, start

NO_REASON = 0x09
USER_ABORT = 0x03


def plate(index: int, name: str) -> str:  # as tests/relay/mms_server.py makes them
    return (f"plate {index} {name} " + "0123456789abcdefghijklmnopqrstuvwxyz" * 8)[:250]


async def relayed(server: MmsServer, steps: str, **options: Any) -> tuple[Any, Relay,
                                                                        list[dict[str, Any]]]:
    log: list[dict[str, Any]] = []
    relay = await start(("127.0.0.1", server.port), options=RelayOptions(**options),
                        on_spdu=log.append)  # fmt: skip
    async with relay:
        result = await asyncio.to_thread(run_mms_client, relay.port, steps)
        await wait_for_no_sessions(relay)
    return result, relay, log


async def wait_for_no_sessions(relay: Relay, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while relay.live:
            await asyncio.sleep(0.01)  # (polls the relay's own state; bounded by the timeout)


def spdus(log: list[dict[str, Any]], leg: str, direction: str) -> list[dict[str, Any]]:
    return [r for r in log if r["leg"] == leg and r["dir"] == direction and "spdu" in r]


def last_session(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the last session (the client may retry a raced connect)."""
    sid = [r["session"] for r in log if r.get("spdu") == "CN"][-1]
    return [r for r in log if r["session"] == sid]


def test_read_data_set_write_and_release(mms_server: MmsServer) -> None:
    result, relay, log = run(relayed(mms_server, "read,dataset,write,release"), 60)
    assert result.returncode == 0, result.stderr
    assert result.get("read") == 42.5
    assert result.get("dataset") == 30
    first, last = result.get("strings")
    assert first[0] == plate(1, "vendor") and last[-1] == plate(30, "location")
    assert result.get("write") == 12.25
    assert result.get("release") is not None  # the connection was ended after DN
    assert relay.stats.ended["released"] >= 1 and relay.stats.ended["aborted"] == 0
    records = last_session(log)
    kinds = [r["spdu"] for r in spdus(records, "upstream", "out")]
    assert kinds[0] == "CN" and kinds[-1] == "FN"
    assert [r["spdu"] for r in spdus(records, "client", "out")][-1] == "DN"
    # The data set's response: one TSDU of tens of KiB on each leg (several COTP DTs).
    big = [r for r in spdus(records, "upstream", "in") if r.get("user_data", 0) > 40_000]
    assert len(big) == 1, [r.get("user_data") for r in spdus(records, "upstream", "in")]
    relayed_back = [r for r in spdus(records, "client", "out") if r.get("spdu") == "DT"]
    assert big[0]["user_data"] in [r.get("user_data") for r in relayed_back]
    assert big[0]["user_data"] > 5 * 8192  # more than five 8192-octet DTs
    # The CN and the AC went across with the same parameters and user data.
    cn_in = next(r for r in spdus(records, "client", "in") if r["spdu"] == "CN")
    cn_out = next(r for r in spdus(records, "upstream", "out") if r["spdu"] == "CN")
    assert cn_in["params"] == cn_out["params"] and cn_in["user_data"] == cn_out["user_data"]


def test_abort_from_the_client(mms_server: MmsServer) -> None:
    result, relay, log = run(relayed(mms_server, "read,abort"), 60)
    assert result.returncode == 0, result.stderr
    assert result.get("abort") is True
    records = last_session(log)
    ab_in = [r for r in spdus(records, "client", "in") if r["spdu"] == "AB"]
    ab_out = [r for r in spdus(records, "upstream", "out") if r["spdu"] == "AB"]
    assert ab_in and ab_out
    assert ab_out[0]["params"]["transport_disconnect"] == USER_ABORT
    assert ab_out[0]["user_data"] == ab_in[0]["user_data"] > 0  # ACSE ABRT carried over
    assert relay.stats.ended["aborted"] >= 1


def test_abort_from_the_server_side_and_the_sessions_both_legs(mms_server: MmsServer) -> None:
    async def scenario() -> tuple[Any, list[Any], list[dict[str, Any]]]:
        log: list[dict[str, Any]] = []
        async with await start(("127.0.0.1", mms_server.port), on_spdu=log.append) as relay:
            client = MmsClientProcess(relay.port, "read,closed")
            try:
                record = await asyncio.to_thread(client.next_record)
                assert record == {"read": 42.5}
                seen = relay.sessions
                mms_server.stop_connections()  # the server drops every association
                result = await asyncio.to_thread(client.finish)
            finally:
                client.kill()
            await wait_for_no_sessions(relay)
        return result, seen, log

    result, seen, log = run(scenario(), 60)
    assert result.returncode == 0, result.stderr
    assert result.get("closed") is not None  # the client saw the association end
    live = [s for s in seen if s.phase == "open"]
    assert len(live) == 1
    info = live[0]
    assert info.client.state == info.upstream.state == "STA713"  # type: ignore[union-attr]
    assert info.upstream.peer == ("127.0.0.1", mms_server.port)  # type: ignore[union-attr]
    assert info.client.bytes_in > 0 and info.upstream.bytes_out > 0  # type: ignore[union-attr]
    assert (info.calling_ssel, info.called_ssel) == ("0001", "0001")
    assert info.to_dict()["upstream"]["peer"] == f"127.0.0.1:{mms_server.port}"
    records = last_session(log)
    ab = [r for r in spdus(records, "client", "out") if r["spdu"] == "AB"]
    assert ab and ab[0]["params"]["transport_disconnect"] == NO_REASON
