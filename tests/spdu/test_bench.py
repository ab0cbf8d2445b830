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


def test_setup_cpu_help_is_its_usage() -> None:
    """``python -m bench.setup_cpu --help`` prints its usage (it was int('--help')'s
    traceback), and an N that is not one is a usage line, exit 2."""
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench.setup_cpu", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    done = run("--help")
    assert done.returncode == 0 and "usage: python -m bench.setup_cpu" in done.stdout, done
    assert "Traceback" not in done.stderr
    done = run("many")
    assert done.returncode == 2 and "not a number of sessions: 'many'" in done.stderr, done
    assert "Traceback" not in done.stderr
