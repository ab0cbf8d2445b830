"""The architecture as tests: the import graph of ``src/sessionlayer`` has no cycle (even
through imports under ``TYPE_CHECKING``), each layer imports only the layers below it, and
no module reaches into another object's private members.

Read from the source with :mod:`ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sessionlayer"

#: What each folder may import from sessionlayer (besides itself and errors.py): the
#: layers of docs/architecture.md, from the bottom up.
ALLOWED: dict[str, set[str]] = {
    "spdu": set(),
    "transport": {"machine"},  # (the fast path's DATA_PREFIX: GT + DT, both empty)
    "machine": {"spdu"},
    "agent": {"spdu", "transport", "machine", "recovery"},
    "aio": {"spdu", "transport", "machine", "agent", "recovery", "stores", "metrics"},
    "recovery": {"spdu", "machine"},
    "stores": {"spdu", "machine", "recovery"},  # beside the binding: does I/O
    # Top-level modules (sessionlayer/<name>.py) listed here are layers too.
    "dissect": {"spdu", "transport"},  # pure: bytes -> TPDUs and SPDUs
    # pure: SPDUs -> a ladder diagram (the hello's and acknowledgement points' markers)
    "ladder": {"spdu", "transport", "dissect", "agent", "recovery"},
    # The relay: its bridge over two agents (sans-I/O), its asyncio binding and pcap writing;
    # the binding shares the server's listening sockets and TLS accept (aio/listening.py,
    # aio/tls_accept.py).
    "relay": {"spdu", "transport", "machine", "agent", "recovery", "capture", "aio"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, path: Path) -> set[str]:
    """The sessionlayer modules ``name`` imports (resolved to modules, not names)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("sessionlayer")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name, path).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("sessionlayer"):
                continue
            for alias in node.names:  # ``from . import x``: x may be a module
                candidate = f"{target}.{alias.name}"
                out.add(candidate if candidate in MODULES else target)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_no_import_cycle() -> None:
    """Modules import each other in one direction only (the package ``sessionlayer``
    itself, which re-exports lazily, is left out: every module's parent)."""
    graph = {m: {d for d in deps if d != "sessionlayer"} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_each_layer_imports_only_the_layers_below() -> None:
    wrong = []
    for module, deps in GRAPH.items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in ALLOWED:
            continue
        layer = parts[1]
        for dep in deps:
            dep_parts = dep.split(".")
            other = dep_parts[1] if len(dep_parts) > 1 else ""
            if other in ("", layer, "errors") or other in ALLOWED[layer]:
                continue
            wrong.append(f"{module} imports {dep}")
    assert not wrong, wrong


def test_no_private_member_of_another_object() -> None:
    """``x._name`` in src/ only for ``self``/``cls`` (or a module's own private names)."""
    pattern = re.compile(r"\b(?!self\b|cls\b)([a-z_][a-z0-9_]*)\._[a-z]\w*")
    offenders = []
    for path in MODULES.values():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for match in pattern.finditer(code):
                owner = match.group(1)
                if owner in ("os", "sys", "socket", "asyncio", "_local", "_warnings"):
                    continue  # library and module-level names
                offenders.append(f"{path.relative_to(SRC)}:{number}: {match.group(0)}")
    assert not offenders, offenders


def test_the_architecture_doc_says_these_rules() -> None:
    """docs/architecture.md's table of the folders says what ``ALLOWED`` says, for every
    layer (it said agent/ and stores/ import no recovery, relay/ no more of aio than two
    files, and had no row for recovery/)."""
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    names = {p.stem for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    said: dict[str, set[str]] = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        layers = {n.removesuffix("/").removesuffix(".py") for n in re.findall(r"`([^`]+)`",
                                                                               cells[0])}
        imports = set(re.findall(r"`([^`]+)`", cells[2])) & names
        for layer in layers:
            said[layer] = set() if cells[2].startswith("not checked") else imports
            if cells[2].startswith("not checked"):
                assert layer not in ALLOWED, f"{layer} is a layer in ALLOWED"
    for layer, allowed in ALLOWED.items():
        assert said.get(layer) == allowed, (layer, said.get(layer), allowed)
