"""``sessionlayer decode``: hex and captures in, one line per TPDU/SPDU out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessionlayer.cli import main

CN_TPKT = (
    "030000bb02f080"
    "0db20506130100160102140200023302000134020001c19c318199a003800101a28191810400000001"
    "820400000001a423300f0201010604520100013004060251013010020103060528ca22020130040602"
    "5101615e305c020101a0576055a107060528ca220203a20706052901876701a30302010ca606060429"
    "018767a70302010cbe2f282d020103a028a826800300fde881010582010583010aa416800101810305"
    "f100820c03ee1c00000408000079ef18"
)


def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_tpkt_hex_prints_one_line_per_tpdu_and_spdu() -> None:
    code, out, err = run("decode", CN_TPKT)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("COTP DT eot=1")
    assert lines[1].startswith("    SES CN ")
    assert "version=2" in lines[1] and "requirements=2" in lines[1]
    assert "calling_ssel=0001" in lines[1]


def test_whitespace_and_stdin_are_accepted() -> None:
    spaced = " ".join(CN_TPKT[i : i + 2] for i in range(0, len(CN_TPKT), 2))
    code, out, _ = run("decode", stdin=spaced + "\n")
    assert code == 0
    assert "SES CN" in out


def test_bare_spdus_json() -> None:
    code, out, _ = run("decode", "--json", "01 00 01 00 61 09 30 07")
    assert code == 0
    spdus = json.loads(out)
    assert [s["spdu"] for s in spdus] == ["GT", "DT"]
    assert spdus[1]["si"] == 1
    assert spdus[1]["user_data"] == "61093007"
    assert spdus[0]["params"] == {}
    assert "user_data" not in spdus[0]


def test_json_names_nested_parameters() -> None:
    code, out, _ = run("decode", "--json", CN_TPKT)
    assert code == 0
    (cn,) = json.loads(out)
    assert cn["spdu"] == "CN" and cn["si"] == 13
    assert cn["params"]["item"] == {"protocol_options": 0, "version": 2}
    assert cn["params"]["called_ssel"] == "0001"
    assert len(bytes.fromhex(cn["user_data"])) == 156


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["decode", "zz"], "", "not hex"),
        (["decode", "abc"], "", "odd number"),
        (["decode"], "", "no input"),
        (["decode", "0d05ff"], "", "claims 5 parameter octets"),
        (["decode", "0300000402f080"], "", "TPKT"),
        (["decode", "19 00"], "", ""),  # AB alone is fine: control
        (["decode", "31 03 2a 01 31"], "", "MIP (SI 49, category 2) must follow"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args: list[str], stdin: str, needle: str) -> None:
    code, out, err = run(*args, stdin=stdin)
    if args[1:] == ["19 00"]:
        assert code == 0 and "SES AB" in out
        return
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_pcap_it_cannot_read_is_a_clear_error_exit_1(tmp_path: Path) -> None:
    """A file the command cannot use is exit status 1 (docs/cli.md); a FIFO is refused at
    once (reading it would wait for a writer)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, needle in [(tmp_path / "nope.pcap", "no such file"),
                         (fifo, "not a regular file"), (tmp_path, "not a regular file")]:
        code, _, err = run("decode", "--pcap", str(path))
        assert code == 1, err
        assert f"--pcap {path}: {needle}" in err and err.count("\n") == 1, err


def test_garbage_pcap_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pcap"
    path.write_bytes(b"this is not a capture at all")
    code, _, err = run("decode", "--pcap", str(path))
    assert code == 2
    assert "Traceback" not in err


def test_pcap_conversation_in_order(vectors_dir: Path) -> None:
    code, out, err = run("decode", "--json", "--pcap", str(vectors_dir / "libiec61850-read.pcapng"))
    assert code == 0, err
    kinds = [s["spdu"] for s in json.loads(out)]
    assert kinds[:2] == ["CN", "AC"]
    assert kinds.count("DT") >= 2 and "FN" in kinds and "DN" in kinds
    assert kinds.index("FN") < kinds.index("DN")


def test_pcap_abort_capture(vectors_dir: Path) -> None:
    code, out, err = run("decode", "--pcap", str(vectors_dir / "libiec61850-abort.pcapng"))
    assert code == 0, err
    assert "SES AB transport_disconnect=0x0b" in out
    assert "COTP CR" in out and "COTP CC" in out


def test_console_script_runs_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sessionlayer", "decode", "not-hex"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("sessionlayer:")
    assert "Traceback" not in proc.stderr


def test_mia_with_user_data_in_pi_46_decodes() -> None:
    # PT, then MIA: Serial Number "1", MIA User Data (PI 46) "mia" -- as ISODE sends it.
    code, out, err = run("decode", "--json", "0200 3208 2a0131 2e03 6d6961")
    assert code == 0, err
    mia = json.loads(out)[1]
    assert mia["spdu"] == "MIA" and mia["user_data"] == b"mia".hex()


def test_pcap_names_si_42_after_an_activity_end_aea(tmp_path: Path) -> None:
    from sessionlayer.capture import write_pcap
    from sessionlayer.spdu import (
        ActivityEnd,
        GiveTokens,
        MajorSyncAck,
        MajorSyncPoint,
        PleaseTokens,
        encode_tsdu,
    )
    from sessionlayer.transport import Data, encode_tpdu, encode_tpkt

    def frame(*spdus: object) -> bytes:
        return encode_tpkt(encode_tpdu(Data(encode_tsdu(*spdus))))  # type: ignore[arg-type]

    path = tmp_path / "activity.pcap"
    write_pcap(path, [
        ("C->S", frame(GiveTokens(), MajorSyncPoint(serial_number=1))),
        ("S->C", frame(PleaseTokens(), MajorSyncAck(serial_number=1))),
        ("C->S", frame(GiveTokens(), ActivityEnd(serial_number=2))),
        ("S->C", frame(PleaseTokens(), MajorSyncAck(serial_number=2))),
    ])  # fmt: skip
    code, out, err = run("decode", "--pcap", str(path))
    assert code == 0, err
    names = [line.split("SES ")[1].split()[0] for line in out.splitlines() if "SES " in line]
    assert names == ["GT", "MAP", "PT", "MAA", "GT", "AE", "PT", "AEA"], out
