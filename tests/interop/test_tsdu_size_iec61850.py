"""sessionlayer's server configured with a TSDU maximum size, answering the real libiec61850
MMS client, whose CN carries no TSDU Maximum Size (PI 21).

Without PI 21 in the CN nothing may be segmented: the AC carries no sizes and no DT carries
an Enclosure Item, which libiec61850's client cannot take (its read then fails).  The MMS
answers come from the libiec61850 capture, as in test_sessionlayer_responder.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.interop.test_sessionlayer_responder import CONCLUDE_REQUEST, READ_REQUEST, _serve_mms

from sessionlayer import SessionConfig


@pytest.mark.parametrize("send, receive", [(1024, 0), (0, 1024), (1024, 1024)])
def test_a_configured_tsdu_size_does_not_segment_toward_libiec61850(
    run_iec61850_client: Any, send: int, receive: int
) -> None:
    config = SessionConfig.kernel_duplex(tsdu_max_send=send, tsdu_max_receive=receive)
    result, seen = asyncio.run(
        asyncio.wait_for(_serve_mms(False, run_iec61850_client, config), 30))
    assert result.ok, result.stderr
    assert result.value == 42.5  # the read response reached the client, unsegmented
    served = [s for s in seen if s["requests"]]  # (the client may retry a raced connect)
    assert served, seen
    assert served[-1]["requests"] == [READ_REQUEST, CONCLUDE_REQUEST]
    assert all(s["sizes"] == (0, 0) for s in seen), seen
