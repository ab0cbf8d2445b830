"""open_store(): which store a URL names, and redis-py imported only for Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.stores.helpers import run

from sessionlayer.stores import MemoryStore, RedisStore, SQLiteStore, open_store


def test_memory() -> None:
    store = open_store("memory")
    assert isinstance(store, MemoryStore) and store.name == "memory"


@pytest.mark.parametrize("form", ["sqlite:{}/a.db", "sqlite:{}/sessions", "{}/b.sqlite",
                                  "{}/c.db", "{}/d.sqlite3"])  # fmt: skip
def test_sqlite(tmp_path: Path, form: str) -> None:
    url = form.format(tmp_path)
    store = open_store(url, synchronous="FULL", timeout=1.0)
    assert isinstance(store, SQLiteStore)
    assert store.name == "sqlite:" + url.removeprefix("sqlite:")
    run(store.close())


def test_redis() -> None:
    store = open_store("redis://127.0.0.1:6399/2", prefix="app:", timeout=0.5)
    assert isinstance(store, RedisStore)
    assert store.name == "redis://127.0.0.1:6399/2" and store.prefix == "app:"
    assert isinstance(open_store("rediss://127.0.0.1"), RedisStore)


@pytest.mark.parametrize("url", ["", "sqlite:", "postgres://db/x", "mem", "sessions.txt",
                                 "http://x/a.db"])  # fmt: skip
def test_unknown_schemes_raise_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="unknown session store"):
        open_store(url)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6399/abc", "redis://127.0.0.1:6399/5/extra",
                                 "redis://127.0.0.1:6399/1/2", "redis://127.0.0.1:6399/-1",
                                 "rediss://127.0.0.1/5/", "redis://:pw@127.0.0.1:6399/x",
                                 "redis://127.0.0.1:6399/0?db=abc"])  # fmt: skip
def test_a_redis_url_whose_database_is_not_a_number_raises_value_error(url: str) -> None:
    """redis-py took ``/abc`` and ``/5/extra`` for database 0 and ``/1/2`` for 12: the
    store's records went, unsaid, into another database than the one meant."""
    with pytest.raises(ValueError, match="names no database: redis://") as info:
        open_store(url)
    assert "[/DB]" in str(info.value) and "pw" not in str(info.value)


@pytest.mark.parametrize(("url", "name"), [
    ("redis://127.0.0.1:6399", "redis://127.0.0.1:6399/0"),
    ("redis://127.0.0.1:6399/", "redis://127.0.0.1:6399/0"),
    ("redis://127.0.0.1:6399/15", "redis://127.0.0.1:6399/15"),
    ("redis://127.0.0.1:6399?db=4", "redis://127.0.0.1:6399/4"),
])  # fmt: skip
def test_a_redis_url_names_its_database_or_none(url: str, name: str) -> None:
    assert open_store(url).name == name


def test_a_redis_url_whose_port_is_not_a_number_raises_value_error() -> None:
    with pytest.raises(ValueError, match="has no port number after the host"):
        open_store("redis://127.0.0.1:redis/0")


def test_unknown_names_raise_attribute_error() -> None:
    import sessionlayer.stores

    with pytest.raises(AttributeError, match="PostgresStore"):
        _ = sessionlayer.stores.PostgresStore


def test_redis_py_is_imported_only_for_a_redis_url(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from sessionlayer.stores import open_store\n"
        f"open_store('memory'); open_store('sqlite:{tmp_path}/x.db')\n"
        "print('redis' in sys.modules, 'sessionlayer.stores.redis' in sys.modules)\n"
        "open_store('redis://127.0.0.1:6399/0')\n"
        "print('redis' in sys.modules)\n"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60, env={"PYTHONPATH": str(src)})  # fmt: skip
    assert done.stdout.split() == ["False", "False", "True"]


@pytest.mark.parametrize("timeout", [-1, 0, 0.0, float("nan"), float("inf"), True, "2", None])
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_timeout_that_is_not_one_raises_value_error(tmp_path: Path, kind: str,
                                                      timeout: object) -> None:  # fmt: skip
    """In the constructor, before any file is made: SQLiteStore(timeout=-1) or 0 was
    taken and then every call failed ("the database is locked: -1s passed"), nan and
    inf raised sqlite3's ValueError and OverflowError, "2" a TypeError."""
    url = f"sqlite:{tmp_path}/t.db" if kind == "sqlite" else "redis://127.0.0.1:6399/0"
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds"
                                         " above 0"):  # fmt: skip
        open_store(url, timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be"):
        (SQLiteStore(tmp_path / "t.db", timeout=timeout) if kind == "sqlite"  # type: ignore[arg-type]
         else RedisStore(url, timeout=timeout))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
