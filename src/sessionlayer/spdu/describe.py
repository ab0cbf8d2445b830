"""SPDUs as plain data: for JSON output, logs and the command line."""

from __future__ import annotations

from typing import Any

from .spec import Grouped
from .types import SPDU

__all__ = ["plain", "spdu_to_dict", "spdu_summary"]


def plain(value: Any) -> Any:
    """A JSON-ready copy: bytes become hex, groups become dicts, tuples lists."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Grouped):
        return {k: plain(v) for k, v in value.fields().items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, int):
        return int(value)
    return value


def spdu_to_dict(spdu: SPDU) -> dict[str, Any]:
    """``{"spdu": "CN", "si": 13, "params": {...}, "user_data": "hex"}``.

    ``user_data`` is there only when the SPDU carries user data.
    """
    fields = spdu.fields()
    data = fields.pop("user_data", None)
    out: dict[str, Any] = {
        "spdu": spdu.kind,
        "si": spdu.si,
        "name": spdu.name,
        "params": {k: plain(v) for k, v in fields.items()},
    }
    if data is not None:
        out["user_data"] = bytes(data).hex()
    return out


def _short(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex() if len(value) <= 16 else f"<{len(value)} octets>"
    if isinstance(value, Grouped):
        inner = " ".join(f"{k}={_short(v)}" for k, v in value.fields().items())
        return "{" + inner + "}"
    if isinstance(value, tuple):
        return "(" + ",".join(_short(v) for v in value) + ")"
    if isinstance(value, int):
        return f"0x{value:02x}" if value > 9 else str(value)
    return str(value)


def spdu_summary(spdu: SPDU) -> str:
    """One line: ``CN item={protocol_options=0 version=2} requirements=0x02 ...``."""
    parts = [spdu.kind]
    for key, value in spdu.fields().items():
        if key == "user_data":
            parts.append(f"user_data=<{len(value)} octets>")
        else:
            parts.append(f"{key}={_short(value)}")
    return " ".join(parts)
