"""Shared by the SPDU tests: Hypothesis settings, TPKT/COTP framing, pcap writing."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from hypothesis import HealthCheck, settings

# ------------------------------------------------------------------ Hypothesis profiles
#
# One profile per depth; pick with SESSIONLAYER_SPDU_PROFILE (default "spdu").
# They are applied per test (``@PROFILE``), so they do not change the settings
# of other packages' tests.  "spdu" keeps the whole tests/spdu run well under
# 90 s; "spdu-thorough" is for a long local fuzzing session.

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("spdu", max_examples=300, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("spdu-ci", max_examples=500, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("spdu-thorough", max_examples=5000, **_COMMON)  # type: ignore[arg-type]

_DEFAULT = "spdu-ci" if os.environ.get("CI") else "spdu"
_NAME = os.environ.get("SESSIONLAYER_SPDU_PROFILE") or _DEFAULT
PROFILE = settings(settings.get_profile(_NAME))
#: For the slow properties (byte-at-a-time streaming, big user data): fewer examples.
SLOW_PROFILE = settings(PROFILE, max_examples=max(20, PROFILE.max_examples // 4))

# ------------------------------------------------------------------ RFC 1006 framing

COTP_DT_EOT = b"\x02\xf0\x80"  #: class 0 DT TPDU header: LI 2, DT, EOT + TPDU-NR 0


def tpkt_dt(tsdu: bytes) -> bytes:
    """One TSDU as one TPKT + COTP DT (EOT) -- ``03 00 LL LL 02 f0 80`` + TSDU."""
    body = COTP_DT_EOT + tsdu
    if len(body) + 4 > 0xFFFF:
        raise ValueError(f"TSDU of {len(tsdu)} octets does not fit one TPKT")
    return struct.pack(">BBH", 3, 0, len(body) + 4) + body


def split_tpkts(stream: bytes) -> list[bytes]:
    """Split a whole TPKT stream by the TPKT length (no validation beyond that)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(stream):
        length = int.from_bytes(stream[pos + 2 : pos + 4], "big")
        out.append(stream[pos + 4 : pos + length])
        pos += length
    return out


# ------------------------------------------------------------------ vectors


def vectors_dir() -> Path:
    """<repo>/../shared/vectors when present, else tests/vectors."""
    repo = Path(__file__).resolve().parents[2]
    shared = repo.parent / "shared" / "vectors"
    if (shared / "libiec61850.json").is_file():
        return shared
    return repo / "tests" / "vectors"


# ------------------------------------------------------------------ pcap


def write_pcap(path: Path, payloads: Sequence[bytes], port: int = 102) -> None:
    """Write *payloads* as one client-to-server TCP stream, one segment each.

    Uses :func:`sessionlayer.capture.write_pcap` when that module is there;
    otherwise a minimal classic-pcap writer (Ethernet/IPv4/TCP, valid
    sequence numbers and checksums) below.
    """
    try:
        from sessionlayer.capture import write_pcap as project_write_pcap
    except ImportError:
        _write_pcap(path, payloads, port)
        return
    project_write_pcap(path, [("C->S", p) for p in payloads], server=("127.0.0.1", port))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _write_pcap(path: Path, payloads: Iterable[bytes], port: int) -> None:
    src, dst = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2])
    sport = 40000
    seq = 1000

    def frame(flags: int, data: bytes, seq: int, ack: int) -> bytes:
        tcp = struct.pack("!HHIIBBHHH", sport, port, seq, ack, 5 << 4, flags, 65535, 0, 0) + data
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        return b"\x00" * 12 + b"\x08\x00" + ip + tcp

    frames = [frame(0x02, b"", seq - 1, 0)]
    for data in payloads:
        frames.append(frame(0x18, data, seq, 5000))
        seq += len(data)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for index, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + index, 0, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))
