"""The public names of ``sessionlayer`` and ``sessionlayer.aio`` resolve and are documented."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
MODULES = ["sessionlayer", "sessionlayer.aio"]


@pytest.mark.parametrize("module", MODULES)
def test_every_name_in_all_resolves(module: str) -> None:
    imported = importlib.import_module(module)
    names = imported.__all__
    assert len(names) == len(set(names)), "duplicates in __all__"
    for name in names:
        assert getattr(imported, name) is not None, f"{module}.{name}"


def test_star_import_gives_every_name() -> None:
    namespace: dict[str, object] = {}
    exec("from sessionlayer import *", namespace)
    import sessionlayer

    for name in sessionlayer.__all__:
        assert name in namespace, name


def test_package_and_binding_export_the_same_objects() -> None:
    import sessionlayer
    import sessionlayer.aio

    for name in set(sessionlayer.__all__) & set(sessionlayer.aio.__all__):
        assert getattr(sessionlayer, name) is getattr(sessionlayer.aio, name), name


def test_importing_the_package_loads_no_event_loop() -> None:
    code = "import sys, sessionlayer; print('asyncio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("module", MODULES)
def test_docs_api_mentions_every_name(module: str) -> None:
    text = API_DOC.read_text(encoding="utf-8")
    imported = importlib.import_module(module)
    missing = [
        name
        for name in imported.__all__
        if not re.search(r"`(?:sessionlayer\.)?" + re.escape(name) + r"\b", text)
    ]
    assert not missing, f"docs/api.md does not mention {missing}"


def test_docs_api_covers_session_methods_options_and_events() -> None:
    import dataclasses

    import sessionlayer
    from sessionlayer.machine import events

    text = API_DOC.read_text(encoding="utf-8")
    public = [n for n in vars(sessionlayer.Session) if not n.startswith("_")]
    public.append("on_release")
    fields = [f.name for f in dataclasses.fields(sessionlayer.Options)]
    kinds = [n for n in events.__all__ if n.endswith("Indication") or n.endswith("Confirm")]
    # What the page shows as code: fenced blocks and inline spans.
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    code = " ".join(fenced + re.findall(r"`[^`\n]+`", prose))
    missing = [n for n in public + fields + kinds if not re.search(rf"\b{n}\b", code)]
    assert not missing, f"docs/api.md does not mention {missing}"
