"""The public names of ``sessionlayer``, ``sessionlayer.aio``, ``sessionlayer.stores`` and
``sessionlayer.relay`` resolve, and docs/api.md lists exactly them."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
MODULES = ["sessionlayer", "sessionlayer.aio", "sessionlayer.stores", "sessionlayer.relay"]


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


SHARED = "The same objects as in `sessionlayer`:"


def documented_names(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """The names docs/api.md lists, per module: the first column of the table in each
    "## Names in `module`" section, and the names in its paragraph beginning with SHARED."""
    sections: dict[str, tuple[list[str], list[str]]] = {}
    table: list[str] | None = None
    shared: list[str] = []
    paragraph: list[str] = []
    for line in [*text.splitlines(), ""]:
        if paragraph and not line.strip():
            shared.extend(re.findall(r"`(\w+)`", " ".join(paragraph).removeprefix(SHARED)))
            paragraph = []
        if re.match(r"#+ ", line):
            table = None
            found = re.fullmatch(r"## Names in `([\w.]+)`", line)
            if found:
                table, shared = sections.setdefault(found[1], ([], []))
        elif table is not None:
            row = re.match(r"\| `(\w+)` \|", line)
            if row:
                table.append(row[1])
            if line.startswith(SHARED) or (paragraph and line.strip()):
                paragraph.append(line)
    return sections


DOCUMENTED = documented_names(API_DOC.read_text(encoding="utf-8"))


def test_docs_api_lists_the_public_modules() -> None:
    assert set(MODULES) <= set(DOCUMENTED), sorted(DOCUMENTED)


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_docs_api_lists_exactly_all(module: str) -> None:
    table, shared = DOCUMENTED[module]
    listed = table + shared
    assert len(listed) == len(set(listed)), f"docs/api.md lists a name twice for {module}"
    exported = set(importlib.import_module(module).__all__)
    missing, extra = sorted(exported - set(listed)), sorted(set(listed) - exported)
    assert not missing, f"docs/api.md does not list {missing} of {module}.__all__"
    assert not extra, f"docs/api.md lists {extra}, which {module}.__all__ does not have"


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_docs_api_shared_names_are_in_the_package(module: str) -> None:
    import sessionlayer

    _, shared = DOCUMENTED[module]
    assert not set(shared) - set(sessionlayer.__all__), module


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


def test_version_is_written_once() -> None:
    """pyproject.toml takes the version from ``sessionlayer.__version__``, never its own."""
    import tomllib

    import sessionlayer

    pyproject = tomllib.loads((API_DOC.parent.parent / "pyproject.toml").read_text("utf-8"))
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "sessionlayer.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", sessionlayer.__version__)
