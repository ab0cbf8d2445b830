"""``make demo``: a file sent through cuts and a server restart, shown as a ladder of SPDUs
with the X.215 service of each, an SVG of the same, and a summary."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

from sessionlayer.demo import run_demo

#: What someone who has read a textbook page on the session layer must recognise, in order.
SHOWN_IN_ORDER = [
    "T-CONNECT request",  # the transport connection (COTP CR/CC)
    "CN  S-CONNECT request",  # connect, and negotiation:
    "FU proposed",  # functional units
    "service=files",  # the application parameter chosen
    "AC  S-CONNECT response (accept)",
    "AS  S-ACTIVITY-START",  # activity management
    "GT+DT",  # tokens travel with the data
    "S-SYNC-MAJOR request",  # checkpoints
    "the fault injector resets the TCP connection",  # an interruption ...
    "resume token",
    "the session is resumed in place",  # ... and its resume, in place
    "none lost, none twice",
    "killed (SIGKILL)",  # the server restart ...
    "found no server (it is down)",  # (tries while it is down)
    "resumed from checkpoint",  # ... and the resume from the checkpoint
    "resumed from its last checkpoint",
    "S-ACTIVITY-RESUME",
    "AE  S-ACTIVITY-END request",
    "AEA  S-ACTIVITY-END response",
    "FN  S-RELEASE request",
    "DN  S-RELEASE response",
    "SHA-256 OK",
]


def test_the_demo_shows_every_function_and_draws_it(tmp_path: Path) -> None:
    out = io.StringIO()
    svg = tmp_path / "ladder.svg"
    assert run_demo(out, svg) == 0
    text = out.getvalue()
    position = 0
    for marker in SHOWN_IN_ORDER:
        found = text.find(marker, position)
        assert found >= 0, (marker, text[position : position + 2000])
        position = found
    assert "2 cuts and 1 server restart" in text
    assert "1 from a checkpoint" in text
    assert str(svg) in text
    root = ET.fromstring(svg.read_text())
    arrows = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "arrow"]
    assert arrows
    assert sum(int(g.get("data-spdus", "0")) for g in arrows) == int(root.get("data-spdus", "-1"))
    names = {g.get("data-spdu") for g in arrows}
    assert {"CN", "AC", "AS", "DT", "MAP", "MAA", "AR", "AE", "AEA", "FN", "DN"} <= names
