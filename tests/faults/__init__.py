"""Fault-injection tools for the session-recovery tests (issue 8).

- `proxy.FaultProxy`: an asyncio TCP proxy that cuts connections (reset, close, blackhole),
  refuses new ones, or cuts at random byte counts and times from a seeded generator.
- `netns.NetnsPair`: two network namespaces joined by a veth pair; the link can go down
  silently and a namespace can change its address.
- `haproxy.Haproxy`: Debian's haproxy as a real TCP load balancer in front of backends.

They know nothing of the session layer: their own tests use plain TCP echo servers.
A missing tool skips a test locally and fails it under CI (``tests.tools.unavailable``).
"""
