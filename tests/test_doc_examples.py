"""The Python examples a user copies first: README's session in ten lines, docs/api.md's
opening example and docs/rpc.md's, run as written (in a child process, on loopback).

A renamed argument, a default that changed or an example that no longer prints what its
comment says fails here rather than in a user's first five minutes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks(name: str) -> list[str]:
    return BLOCK.findall((ROOT / name).read_text(encoding="utf-8"))


def run(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60,
        check=False, cwd=ROOT,
    )  # fmt: skip


def test_readme_session_in_ten_lines_prints_what_it_says() -> None:
    done = run(blocks("README.md")[0])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "b'HELLO'", done.stdout
    assert lines[1].isdigit(), done.stdout  # the checkpoint's serial number


def test_api_opening_example_runs() -> None:
    done = run(blocks("docs/api.md")[0])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "b'hello'", done.stdout


def test_rpc_example_runs_inside_a_coroutine() -> None:
    # The example uses top-level await: it is the body of a coroutine.
    body = textwrap.indent(blocks("docs/rpc.md")[0], "    ")
    source = (
        "import asyncio\n"
        f"async def main():\n{body}\n"
        "    server.close()\n    await server.wait_closed()\n    print('done')\n"
        "asyncio.run(main())\n"
    )
    done = run(source)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done", done.stdout
