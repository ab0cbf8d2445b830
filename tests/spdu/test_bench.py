"""The benchmark package still runs (a tiny, fast configuration)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_bench_runs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from bench import codec

    assert codec.main(["--seconds", "0.002", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "64 B" in out and "64 KiB" in out and "ratio" in out
