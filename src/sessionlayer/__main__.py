"""``python -m sessionlayer``: the command line (see :mod:`sessionlayer.cli`)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from sessionlayer.cli import exit_with, main
    except KeyboardInterrupt:  # (Ctrl-C while the modules load: no traceback either)
        sys.stderr.write("sessionlayer: interrupted\n")
        raise SystemExit(130) from None
    exit_with(main())
