"""A subcommand's options may come between its positionals (``send FILE --state-dir DIR
HOST:PORT``), and a usage mistake of a command run with ``--json`` answers on stdout as
its other failures do (docs/cli.md)."""

from __future__ import annotations

import io
import json

import pytest

from sessionlayer import cli


@pytest.mark.parametrize(
    ("argv", "want"),
    [(["send", "a.txt", "--state-dir", "st", "h:1"], {"file": "a.txt", "address": "h:1"}),
     (["send", "--state-dir", "st", "a.txt", "h:1"], {"file": "a.txt", "address": "h:1"}),
     (["send", "a.txt", "--name", "b", "h:1", "--json"], {"address": "h:1", "name": "b"}),
     (["get", "a.txt", "-o", "dl", "h:1", "--state-dir", "st"],
      {"name": "a.txt", "address": "h:1", "output": "dl"}),
     (["get", "a.txt", "-o", "dl"], {"name": "a.txt", "address": None}),
     (["decode", "03", "--json", "00"], {"hex": ["03", "00"], "json": True})],
)  # fmt: skip
def test_options_may_come_between_the_positionals(argv: list[str], want: dict[str, object],
                                                  ) -> None:  # fmt: skip
    ns = cli._parser().parse_args(argv)
    assert ns.command == argv[0]
    got = {key: getattr(ns, key) for key in want}
    assert {k: v if v is None or isinstance(v, bool | list) else str(v)
            for k, v in got.items()} == want  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "said"),
    [(["send", "a.txt", "--json", "--checkpoint", "x"], "argument --checkpoint: not a"),
     (["get", "a.txt", "h:1", "extra", "--json"], "unrecognized arguments: extra"),
     (["status", "--json", "--bogus"], "unrecognized arguments: --bogus")],
)  # fmt: skip
def test_a_usage_mistake_with_json_answers_on_stdout(argv: list[str], said: str,
                                                     capsys: pytest.CaptureFixture[str],
                                                     ) -> None:  # fmt: skip
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv, stdout=out)
    assert exit_.value.code == 2
    answer = json.loads(out.getvalue())
    assert answer["exit"] == 2 and answer["error"].startswith(said), answer
    assert said in capsys.readouterr().err  # (and the usage, with the line, on stderr)
    with pytest.raises(SystemExit):  # (without --json: nothing on stdout)
        cli.main([a for a in argv if a != "--json"], stdout=(out := io.StringIO()))
    assert out.getvalue() == ""
