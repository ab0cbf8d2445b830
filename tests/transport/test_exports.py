"""The public names of sessionlayer.transport and sessionlayer.capture exist."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "sessionlayer.transport",
        "sessionlayer.transport.tpkt",
        "sessionlayer.transport.codes",
        "sessionlayer.transport.cotp",
        "sessionlayer.transport.reassembly",
        "sessionlayer.transport.connection",
        "sessionlayer.transport.fastpath",
        "sessionlayer.capture",
    ],
)
def test_all_names_exist(module: str) -> None:
    imported = importlib.import_module(module)
    names = imported.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(imported, name), f"{module}.{name}"


def test_package_reexports_every_submodule_name() -> None:
    transport = importlib.import_module("sessionlayer.transport")
    for sub in ("tpkt", "cotp", "reassembly", "connection", "fastpath"):
        module = importlib.import_module(f"sessionlayer.transport.{sub}")
        public = {n for n in module.__all__ if not n.isupper() or n == "TPDU"}
        assert public <= set(transport.__all__), sub
