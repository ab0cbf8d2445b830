"""``python -m sessionlayer`` and the ``sessionlayer`` console script (:func:`run`).

The command line's modules load inside :func:`run`: Ctrl-C while they load (about 0.15 s)
ends in one line and status 130 too, as it does once a command runs.  Importing this module
loads nothing else (``sessionlayer/__init__.py`` imports its names on first use).
"""

from __future__ import annotations

import sys
from typing import NoReturn

_INTERRUPTED = 130  # (sessionlayer.cli.EXIT_INTERRUPTED, not imported yet)


def run() -> NoReturn:
    """Console-script entry point: the command line, exit with its status."""
    try:
        from sessionlayer.cli import exit_with, main

        status = main(exiting=True)
    except KeyboardInterrupt:  # (while the modules load, or argparse runs)
        sys.stderr.write("sessionlayer: interrupted\n")
        raise SystemExit(_INTERRUPTED) from None
    exit_with(status)


if __name__ == "__main__":
    run()
