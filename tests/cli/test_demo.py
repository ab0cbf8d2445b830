"""``sessionlayer demo`` runs two peers on loopback and shows their SPDUs."""

from __future__ import annotations

import io

from sessionlayer.cli import main


def test_demo_shows_the_whole_dialogue() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["demo"], stdout=out, stderr=err) == 0, err.getvalue()
    text = out.getvalue()
    order = ["COTP CR", "COTP CC", "SES CN", "SES AC", "SES DT", "SES MAP", "SES MAA",
             "SES FN", "SES DN"]  # fmt: skip
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "received back: b'HELLO'" in text
    assert "negotiated {'codec': 'json'}" in text
    assert "state: released" in text
