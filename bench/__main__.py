"""``python -m bench``: run every benchmark and print its table."""

from __future__ import annotations

import sys

from bench import codec


def main(argv: list[str] | None = None) -> int:
    return codec.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
