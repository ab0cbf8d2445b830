"""Run one fuzz target for a long time under atheris (coverage-guided).

    python tests/fuzz/run_atheris.py codec -atheris_runs=1000000
    python tests/fuzz/run_atheris.py rfc1006 corpus/ -max_total_time=3600

The first argument names a target of ``tests/fuzz/targets.py`` (codec, rfc1006, plain,
hello, paths); the rest goes to libFuzzer unchanged.  The captured libiec61850 frames are
added to the corpus as seeds when a corpus directory is given and empty.  atheris is not a
dependency of sessionlayer: ``pip install atheris`` first (see docs/fuzzing.md).

Unlike the CI property tests, the rfc1006 target here is strict: it reports every case
where the cut of the input changes the outcome (issue 13), the known ones included.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _atheris() -> Any:
    try:
        atheris = importlib.import_module("atheris")
    except ImportError:
        sys.exit(
            "run_atheris.py needs atheris, which sessionlayer does not depend on:\n"
            "    pip install atheris   (CPython 3.8-3.11 wheels; newer need clang to build)\n"
            "or run the Hypothesis targets long instead:\n"
            "    SESSIONLAYER_FUZZ_EXAMPLES=200000 python -m pytest tests/fuzz"
        )
    return atheris


def main(argv: list[str]) -> None:
    for path in (REPO / "src", REPO):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from tests.fuzz import targets

    if len(argv) < 2 or argv[1] not in targets.TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(targets.TARGETS)}}} [libFuzzer options]")
    atheris = _atheris()
    name, rest = argv[1], argv[2:]
    corpus = next((Path(a) for a in rest if not a.startswith("-")), None)
    if corpus is not None and corpus.is_dir() and not any(corpus.iterdir()):
        for index, seed in enumerate(targets.seeds()):
            (corpus / f"seed-{index:02d}").write_bytes(seed)
    target = targets.TARGETS[name]
    atheris.instrument_all()
    atheris.Setup([argv[0], *rest], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
