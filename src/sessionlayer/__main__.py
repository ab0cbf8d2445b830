"""``python -m sessionlayer``: the command line (see :mod:`sessionlayer.cli`)."""

from __future__ import annotations

from sessionlayer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
