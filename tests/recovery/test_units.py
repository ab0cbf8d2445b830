"""Small pieces of recovery on their own: the journal's edge cases, the hello and welcome
fields of a resume (and what a malformed one gets), the CLI's address parsing."""

from __future__ import annotations

import pytest

from sessionlayer.agent import Hello, Welcome
from sessionlayer.commands import CommandError, parse_address
from sessionlayer.errors import DecodeError, RemoteError
from sessionlayer.recovery import OVERHEAD, Backoff, Journal


def test_the_journal_replays_what_the_peer_lacks_and_refuses_impossible_counts() -> None:
    journal = Journal(limit=1000)
    for i in range(5):
        journal.append(b"%d" % i)
    assert journal.held == 5 and journal.size == 5 * (1 + OVERHEAD)
    journal.mark(7)
    journal.append(b"5")
    journal.confirmed(7)  # the point covered the first five
    assert journal.acked == 5 and journal.held == 1
    with pytest.raises(RemoteError):
        journal.replay(7)  # more than was sent
    with pytest.raises(RemoteError):
        journal.replay(4)  # fewer than it confirmed
    assert journal.replay(5) == [b"5"] and journal.queued == 1
    journal.restart()
    assert (journal.sent, journal.held, journal.size) == (0, 0, 0)


def test_acknowledgement_points_are_due_by_octets_or_by_time() -> None:
    journal = Journal(limit=1 << 20)
    assert not journal.want_ack(0.0, 100, 1.0)
    journal.append(b"x" * 10)
    journal.since = 5.0
    assert not journal.want_ack(5.5, 1000, 1.0)
    assert journal.want_ack(6.0, 1000, 1.0)
    assert journal.ack_deadline(1.0) == 6.0
    journal.append(b"y" * 2000)
    assert journal.want_ack(5.0, 1000, 1.0)
    journal.mark(999_999)
    journal.append(b"z")
    journal.mark(0)  # serial numbers wrap modulo 10**6
    journal.confirmed(0)
    assert journal.held == 0


def test_backoff_grows_with_jitter_up_to_its_cap() -> None:
    import random

    backoff = Backoff(first=0.1, factor=2, cap=1.0, jitter=0.5)
    rng = random.Random(3)
    delays = [backoff.delay(n, rng) for n in range(8)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[5:]) > 0.5
    assert Backoff(first=0).delay(0, rng) == 0.0 and Backoff(first=0).delay(1, rng) > 0


def test_resume_fields_round_trip_and_malformed_ones_are_refused() -> None:
    hello = Hello(recovery=True, resume="ab" * 16 + ".1." + "cd" * 16, recv=12, act="0a0b0c")
    assert Hello.decode(hello.encode()) == hello
    welcome = Welcome(chosen={"service": "files"}, session_id="e" * 32, token="1.2.3",
                      resumed="checkpoint", recv=3, checkpoint=(5, b"cp"), act="0a")  # fmt: skip
    assert Welcome.decode(welcome.encode()) == welcome
    for bad in (b'SLW1{"resumed":"maybe"}', b'SLW1{"recv":-1}', b'SLW1{"cp":[1]}',
                b'SLW1{"cp":{"serial":"x"}}', b'SLW1{"tk":"no spaces"}', b'SLW1{"act":"xyz"}'):
        with pytest.raises(DecodeError):
            Welcome.decode(bad)
    for bad in (b'SLH1{"recv":1.5}', b'SLH1{"act":"0"}'):
        with pytest.raises(DecodeError):
            Hello.decode(bad)


@pytest.mark.parametrize(("text", "address"), [
    (None, ("127.0.0.1", 10102)), ("host", ("host", 10102)), (":99", ("127.0.0.1", 99)),
    ("h:1", ("h", 1)), ("[::1]:5", ("::1", 5)), ("[::1]", ("::1", 10102)),
    ("9000", ("127.0.0.1", 9000)),  # (digits alone: a port; as a host, 0.0.35.40)
])  # fmt: skip
def test_addresses_on_the_command_line(text: str | None, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


def test_a_bad_port_is_one_clear_error() -> None:
    with pytest.raises(CommandError, match="not a port"):
        parse_address("h:70000")
