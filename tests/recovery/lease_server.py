"""An echo server in a process of its own on a session store, for the lease test (it is
killed with SIGKILL).  Prints ``{"port": N}`` when it listens.

    python -m tests.recovery.lease_server --store sqlite:/tmp/s.db --node a --lease 0.6
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

import sessionlayer
from sessionlayer import Options
from sessionlayer.stores import open_store


async def echo(session: sessionlayer.Session) -> None:
    with contextlib.suppress(sessionlayer.SessionLayerError):
        async for data in session:
            await session.send(data)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--lease", type=float, required=True)
    parser.add_argument("--resume-timeout", type=float, required=True)
    args = parser.parse_args()
    server = await sessionlayer.serve(
        echo, "127.0.0.1", 0, options=Options(resume_timeout=args.resume_timeout),
        store=open_store(args.store), node=args.node, lease=args.lease,
    )  # fmt: skip
    sys.stdout.write(json.dumps({"port": server.port}) + "\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
