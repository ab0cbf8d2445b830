"""The libiec61850 peer fixtures work: raw RFC 1006 sockets and the real client, no sessionlayer.

The frames below are the ones captured between a libiec61850 client and server
(shared/vectors/libiec61850.json, frames 4, 8, 10 and 18 of libiec61850-read.pcapng); this file
keeps its own copy so that it runs without shared/, and checks the copy when shared/ is there.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import VALUE, ClientResult, start_iec61850_server

IO_TIMEOUT = 5.0  # per socket operation; the server answers in well under a millisecond

# COTP CR TPDU: class 0, TPDU size 8192 (c0 0d), called TSAP 0001 (c2), calling TSAP 0001 (c1).
COTP_CR = bytes.fromhex("11e00000000100c0010dc2020001c1020001")
COTP_DT = bytes.fromhex("02f080")  # DT TPDU, EOT
SES_CN = bytes.fromhex(
    "0db20506130100160102140200023302000134020001c19c318199a003800101a28191810400000001820400"
    "000001a423300f0201010604520100013004060251013010020103060528ca220201300406025101615e305c"
    "020101a0576055a107060528ca220203a20706052901876701a30302010ca606060429018767a70302010cbe"
    "2f282d020103a028a826800300fde881010582010583010aa416800101810305f100820c03ee1c0000040800"
    "0079ef18"
)
# GT (01 00) + DT (01 00) + P-DATA carrying the MMS read of testmodelSENSORS/GGIO1$MX$AnIn1$mag$f
SES_GT_DT_READ = bytes.fromhex(
    "010001006140303e020103a039a037020101a432a130a02e302ca02aa1281a10746573746d6f64656c53454e"
    "534f52531a144747494f31244d5824416e496e31246d61672466"
)
SES_FN = bytes.fromhex("0910c10e610c300a020101a0056203800100")  # FN carrying ACSE RLRQ
MMS_FLOAT_42_5 = bytes.fromhex("08422a0000")  # floating-point: 8-bit exponent, IEEE 42.5

SI_AC = 0x0E
SI_DN = 0x0A
SI_DT = 0x01


def tpkt(payload: bytes) -> bytes:
    return b"\x03\x00" + (len(payload) + 4).to_bytes(2, "big") + payload


class Rfc1006:
    """A bare TPKT (RFC 1006) socket: no COTP or session logic beyond framing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)

    def close(self) -> None:
        self.sock.close()

    def send(self, payload: bytes) -> None:
        self.sock.sendall(tpkt(payload))

    def _exactly(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                assert not data, f"TCP closed inside a TPKT after {data.hex()}"
                return None
            data += chunk
        return data

    def recv(self) -> bytes | None:
        """One TPKT payload (COTP TPDU), or None if the peer closed TCP."""
        header = self._exactly(4)
        if header is None:
            return None
        assert header[:2] == b"\x03\x00", f"not a TPKT header: {header.hex()}"
        body = self._exactly(int.from_bytes(header[2:], "big") - 4)
        assert body is not None
        return body

    def recv_spdu(self) -> bytes:
        """The session bytes of the next COTP DT (TPDU header 02 f0 80)."""
        tpdu = self.recv()
        assert tpdu is not None, "server closed TCP instead of answering"
        assert tpdu[:3] == COTP_DT, f"expected COTP DT with EOT, got {tpdu.hex()}"
        return tpdu[3:]


@pytest.fixture
def raw(iec61850_server: int):
    conn = Rfc1006(iec61850_server)
    yield conn
    conn.close()


def test_raw_session_exchange_with_real_server(raw: Rfc1006) -> None:
    raw.send(COTP_CR)
    cc = raw.recv()
    assert cc is not None, "server closed TCP after CR"
    assert cc[1] == 0xD0, f"expected COTP CC, got {cc.hex()}"

    raw.send(COTP_DT + SES_CN)
    ac = raw.recv_spdu()
    assert ac[0] == SI_AC, f"expected AC, got {ac.hex()}"

    raw.send(COTP_DT + SES_GT_DT_READ)
    response = raw.recv_spdu()
    assert response[:4] == b"\x01\x00\x01\x00", f"expected GT+DT, got {response.hex()}"
    assert MMS_FLOAT_42_5 in response, f"no 42.5 in the read response {response.hex()}"

    raw.send(COTP_DT + SES_FN)
    dn = raw.recv_spdu()
    assert dn[0] == SI_DN, f"expected DN, got {dn.hex()}"
    # measured: the libiec61850 server closes TCP right after sending DN
    assert raw.recv() is None


@pytest.mark.parametrize("abort", [False, True], ids=["release", "abort"])
def test_client_script_reads_value(
    iec61850_server: int, run_iec61850_client: Callable[..., ClientResult], abort: bool
) -> None:
    result = run_iec61850_client(iec61850_server, abort=abort)
    assert result.value == VALUE == 42.5
    assert json.loads(result.stdout) == {"value": 42.5}


def test_client_script_fails_clearly_without_server(
    run_iec61850_client: Callable[..., ClientResult],
) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_iec61850_client(port, check=False)
    assert result.returncode == 1
    assert "connect to 127.0.0.1" in result.stderr
    assert result.value is None


# What the libiec61850 1.6.1 server does with COTP CR variants (README "surprises").
CR_VARIANTS = {
    "captured": ("11e00000000100c0010dc2020001c1020001", "c0010dc2020001c1020001"),
    "no-parameters": ("06e00000000100", "c0010dc2020001c1020001"),
    "tpdu-2048-echoed": ("09e00000000100c0010b", "c0010bc2020001c1020001"),
    "tsaps-echoed": ("0ee00000000100c2020002c1020003", "c0010dc2020002c1020003"),
    "additional-options-c6": ("0ee00000000100c0010dc6020000", None),
    "called-tsap-17-octets": ("19e00000000100c211" + "00" * 17, None),
}


@pytest.mark.parametrize("variant", list(CR_VARIANTS))
def test_server_cotp_cr_acceptance(raw: Rfc1006, variant: str) -> None:
    cr_hex, cc_params = CR_VARIANTS[variant]
    raw.send(bytes.fromhex(cr_hex))
    cc = raw.recv()
    if cc_params is None:
        assert cc is None, f"expected the server to close TCP, got {cc and cc.hex()}"
        return
    assert cc is not None
    assert cc[1] == 0xD0
    assert cc[7:].hex() == cc_params
    raw.send(COTP_DT + SES_CN)
    assert raw.recv_spdu()[0] == SI_AC


def test_server_takes_at_most_five_connections(iec61850_server: int) -> None:
    conns = [Rfc1006(iec61850_server) for _ in range(6)]
    try:
        answers = []
        for conn in conns:
            conn.send(COTP_CR)
            answers.append(conn.recv() is not None)
        assert answers == [True] * 5 + [False]
    finally:
        for conn in conns:
            conn.close()


def test_fixture_reports_a_server_that_died(iec61850_available: str) -> None:
    with pytest.raises(AssertionError, match="died during the test"):
        with start_iec61850_server() as server:
            server.process.kill()
            server.process.wait()


def _shared_vectors() -> Path | None:
    env = os.environ.get("SESSIONLAYER_SHARED")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo.parent / "shared", repo / "tests"]  # shared/ beside, or tests/vectors
    for base in candidates:
        path = base / "vectors" / "libiec61850.json"
        if path.is_file():
            return path
    return None


def test_frames_match_shared_vectors() -> None:
    path = _shared_vectors()
    if path is None:
        pytest.fail("libiec61850.json found neither in ../shared/vectors nor tests/vectors")
    frames = {e["name"].split(" (")[0]: e for e in json.loads(path.read_text())}
    assert bytes.fromhex(frames["COTP CR"]["cotp"]) == COTP_CR
    for name, spdu in (
        ("CN SPDU", SES_CN),
        ("GT+DT carrying MMS read request", SES_GT_DT_READ),
        ("FN SPDU", SES_FN),
    ):
        assert bytes.fromhex(frames[name]["cotp"]) == COTP_DT
        assert bytes.fromhex(frames[name]["session"]) == spdu
        assert frames[name]["tpkt"] == tpkt(COTP_DT + spdu)[:4].hex()
    assert MMS_FLOAT_42_5 in bytes.fromhex(frames["GT+DT carrying MMS read response"]["session"])
