"""Two network namespaces joined by a veth pair, for faults a proxy cannot fake.

    with NetnsPair(f"sl{os.getpid()}") as pair:
        server = pair.run("a", [sys.executable, "server.py"])    # listens on pair.ip_a
        client = pair.run("b", [sys.executable, "client.py", pair.ip_a])
        pair.link_down()          # packets vanish: no FIN, no RST, no error
        pair.link_up()            # TCP retransmits; the same connections go on
        pair.change_address("b")  # b's next connections come from a new address

Namespaces `<prefix>-a` and `<prefix>-b`; interfaces `veth-a` (in a) and `veth-b` (in b);
addresses `<net>.1/24` and `<net>.2/24` on a random 10.X.Y.0/24 (`pair.net`). Needs root
and iproute2's `ip`; netem is not used (not available everywhere).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import signal
import subprocess
import time
from types import TracebackType
from typing import Any

from tests.tools import unavailable

SIDES = ("a", "b")


def _ip(*args: str) -> str:
    """Run `ip args...`; raise RuntimeError with its stderr when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@functools.cache
def netns_available() -> bool:
    """Root, `ip` present, and a namespace with a veth pair in it can be made and removed."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"slprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return False
    try:
        _ip("-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
        _ip("netns", "exec", probe, "ip", "link", "set", "lo", "up")
        return True
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return False
    finally:
        with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
            _ip("netns", "delete", probe)


def require_netns() -> None:
    """Skip the calling test without network namespaces (fail it in CI)."""
    if not netns_available():
        unavailable("network namespaces need root and iproute2 (ip netns, veth)")


class NetnsPair:
    """Namespaces `<prefix>-a` and `<prefix>-b` joined by a veth pair (a context manager).

    `ns_a`, `ns_b`: the namespace names; `ip_a`, `ip_b`: the current addresses; `net`: the
    first three octets of the /24. Everything made is removed on exit (also when entering
    fails half way): processes started with `run()` are killed, then the namespaces (and
    with them the veth pair) deleted.
    """

    def __init__(self, prefix: str) -> None:
        self.ns = {side: f"{prefix}-{side}" for side in SIDES}
        self.veth = {side: f"veth-{side}" for side in SIDES}
        self.net = f"10.{random.randrange(100, 250)}.{random.randrange(256)}"
        self.ip = {"a": f"{self.net}.1", "b": f"{self.net}.2"}
        self._made: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []

    @property
    def ns_a(self) -> str:
        return self.ns["a"]

    @property
    def ns_b(self) -> str:
        return self.ns["b"]

    @property
    def ip_a(self) -> str:
        return self.ip["a"]

    @property
    def ip_b(self) -> str:
        return self.ip["b"]

    # ------------------------------------------------------------ lifetime

    def __enter__(self) -> NetnsPair:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _setup(self) -> None:
        for side in SIDES:
            _ip("netns", "add", self.ns[side])
            self._made.append(self.ns[side])
        a, b = self.ns["a"], self.ns["b"]
        _ip("link", "add", "veth-a", "netns", a, "type", "veth", "peer", "name", "veth-b",
            "netns", b)
        for side in SIDES:
            ns, veth = self.ns[side], self.veth[side]
            _ip("-n", ns, "addr", "add", f"{self.ip[side]}/24", "dev", veth)
            # Without it, removing the primary address also removes the secondary ones.
            self._sysctl(side, f"net/ipv4/conf/{veth}/promote_secondaries", "1")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", veth, "up")
        self._wait_carrier()

    def _sysctl(self, side: str, key: str, value: str) -> None:
        """Write /proc/sys/`key` as seen inside the namespace."""
        _ip("netns", "exec", self.ns[side], "sh", "-c", f"echo {value} > /proc/sys/{key}")

    def close(self) -> None:
        """Kill what `run()` started (and anything else left in the namespaces), close its
        pipes, then delete the namespaces. Safe to call twice."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        stream.close()
        self._procs.clear()
        for ns in self._made:
            with contextlib.suppress(RuntimeError, OSError, ValueError):
                for pid in _ip("netns", "pids", ns).split():
                    os.kill(int(pid), signal.SIGKILL)
        while self._made:
            ns = self._made.pop()
            with contextlib.suppress(RuntimeError):
                _ip("netns", "delete", ns)

    # ------------------------------------------------------------ use

    def run(self, side: str, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside namespace `side` ("a" or "b"); killed on exit."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[side], *argv], **popen_kwargs)
        self._procs.append(proc)
        return proc

    def link_down(self, side: str = "a") -> None:
        """Take `side`'s end of the veth down. The other side keeps its address and route
        but loses carrier: what it sends vanishes silently, new connections time out.
        The downed side loses its route (its own sends fail softly inside TCP)."""
        _ip("-n", self.ns[side], "link", "set", self.veth[side], "down")

    def link_up(self, side: str = "a") -> None:
        """Bring `side`'s end up again and wait (bounded) until both ends have carrier."""
        _ip("-n", self.ns[side], "link", "set", self.veth[side], "up")
        self._wait_carrier()

    def change_address(self, side: str = "b", new_ip: str | None = None) -> str:
        """Give `side` a new address in the /24 (the next free one unless given): add the
        new one, remove the old one. Returns the new address (now in `ip[side]`)."""
        if new_ip is None:
            used = set(self.ip.values())
            new_ip = next(
                f"{self.net}.{host}" for host in range(3, 255) if f"{self.net}.{host}" not in used
            )
        ns, veth = self.ns[side], self.veth[side]
        _ip("-n", ns, "addr", "add", f"{new_ip}/24", "dev", veth)
        _ip("-n", ns, "addr", "del", f"{self.ip[side]}/24", "dev", veth)
        self.ip[side] = new_ip
        return new_ip

    def _wait_carrier(self, timeout: float = 5.0) -> None:
        """Poll (bounded) until both veth ends are operationally up (carrier comes a moment
        after `ip link set up`; polling is simpler than following `ip monitor`)."""
        deadline = time.monotonic() + timeout
        while True:
            states = [
                _ip("-n", self.ns[side], "-o", "link", "show", "dev", self.veth[side])
                for side in SIDES
            ]
            if all("state UP" in state and "NO-CARRIER" not in state for state in states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"veth pair without carrier after {timeout} s: {states}")
            time.sleep(0.01)
