"""A session server in a process of its own, for the restart and node-loss tests.

Every message a session receives is appended to its ledger (``<dir>/<session id>.ledger``,
one line per message).  A checkpoint the client sets (a major sync point whose user data is
the number of messages sent before it) is confirmed only once the ledger holds exactly that
many lines and is fsynced.  A session resumed from a checkpoint (this process did not hold
it live: a restart, or another node) first cuts its ledger back to the checkpoint.  Prints
``{"port": N}`` when it listens.

    python -m tests.recovery.ledger_server --store sqlite:/tmp/s.db --dir /tmp/ledgers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import sessionlayer
from sessionlayer import Options
from sessionlayer.recovery import Checkpoint
from sessionlayer.stores import open_store


def _cut_back(path: str, keep: int) -> None:
    with open(path, "ab+") as f:
        f.seek(0)
        lines = f.read().split(b"\n")
        lines = [line for line in lines if line][:keep]
        f.seek(0)
        f.truncate()
        f.write(b"".join(line + b"\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--store", required=True)
    parser.add_argument("--node", default=None)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--resume-timeout", type=float, default=60.0)
    parser.add_argument("--lease", type=float, default=None)  # (None: serve()'s default)
    args = parser.parse_args()
    if os.environ.get("LEDGER_LOG"):
        import logging

        fmt = f"%(relativeCreated)d {args.node}: %(message)s"
        logging.basicConfig(level=logging.DEBUG, format=fmt)
    store = open_store(args.store)

    async def handler(session: sessionlayer.Session) -> None:
        path = os.path.join(args.dir, session.id + ".ledger")
        count = 0
        if session.restored is not None:
            count = int(session.restored.user_data or b"0")
            _cut_back(path, count)
        with open(path, "ab") as ledger:

            def checkpoint(cp: Checkpoint) -> None:
                ledger.flush()
                os.fsync(ledger.fileno())
                if int(cp.user_data or b"0") != count:
                    raise RuntimeError(f"checkpoint says {cp.user_data!r}, ledger has {count}")

            session.on_checkpoint = checkpoint
            async for data in session:
                ledger.write(data + b"\n")
                count += 1

    options = Options(resume_timeout=args.resume_timeout)
    server = await sessionlayer.serve(handler, "127.0.0.1", args.port, options=options,
                                      store=store, node=args.node, lease=args.lease)  # fmt: skip
    sys.stdout.write(json.dumps({"port": server.port, "node": server.node}) + "\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
