#!/usr/bin/env python3
"""A real libiec61850 MMS server (pyiec61850-ng) with a model big enough for the relay tests.

TEST-ONLY: pyiec61850-ng is GPL-3.0; sessionlayer never imports it.  This script runs in its
own process and is talked to over loopback TCP only.

    python tests/relay/mms_server.py --port 0 [--host 127.0.0.1] [--plates 30]

The IED ``testmodel``, logical device ``SENSORS`` (MMS domain ``testmodelSENSORS``):

* ``GGIO1.AnIn1.mag.f`` [MX] = 42.5 (as in tests/interop/iec61850_server.py);
* ``GGIO1.SetPt.setMag.f`` [SP] = 1.0, writable (write access policy ALLOW for FC SP);
* ``GGIO2.Plate1`` .. ``GGIO2.PlateN`` (DPL, FC DC): vendor, hwRev, swRev, serNum, model
  and location, each a 250-character visible string: ``plate(i, name)`` below;
* the data set ``LLN0.Plates`` holding every plate: reading it returns about 1.3 KiB per
  plate in one MMS response (30 plates: ~40 KiB, five 8192-octet COTP DTs).

Protocol with the parent: ``READY <port>`` on stdout once listening (stdout then goes to
stderr); each line ``STOP`` on stdin stops the server, which closes every client's
connection (libiec61850 sends nothing first) and answers ``STOPPED``; EOF on stdin ends
the process.  Exit codes: 0 clean, 2 no pyiec61850, 3 cannot listen, 1 other.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))

import iec61850_server as base

FIELDS = ("vendor", "hwRev", "swRev", "serNum", "model", "location")
PLATE_OPTIONS = ("CDC_OPTION_DPL_HWREV", "CDC_OPTION_DPL_SWREV", "CDC_OPTION_DPL_SERNUM",
                 "CDC_OPTION_DPL_MODEL", "CDC_OPTION_DPL_LOCATION")  # fmt: skip
SETPOINT = "testmodelSENSORS/GGIO1.SetPt.setMag.f"
DATASET = "testmodelSENSORS/LLN0.Plates"


def plate(index: int, name: str) -> str:
    """The value of one string of the model: 250 characters, different for each."""
    head = f"plate {index} {name} "
    return (head + "0123456789abcdefghijklmnopqrstuvwxyz" * 8)[:250]


def build(iec, value: float, plates: int):  # type: ignore[no-untyped-def]
    model = iec.IedModel_create(base.IED_NAME)
    ld = iec.LogicalDevice_create(base.LD_INST, model)
    lln0 = iec.LogicalNode_create("LLN0", ld)
    iec.CDC_ENS_create("Mod", iec.toModelNode(lln0), 0)
    ggio1 = iec.LogicalNode_create("GGIO1", ld)
    iec.CDC_MV_create("AnIn1", iec.toModelNode(ggio1), 0, False)
    iec.CDC_ASG_create("SetPt", iec.toModelNode(ggio1), 0, False)
    ggio2 = iec.LogicalNode_create("GGIO2", ld)
    options = 0
    for name in PLATE_OPTIONS:
        options |= getattr(iec, name)
    dataset = iec.DataSet_create("Plates", lln0)
    for i in range(1, plates + 1):
        iec.CDC_DPL_create(f"Plate{i}", iec.toModelNode(ggio2), options)
        iec.DataSetEntry_create(dataset, f"GGIO2$DC$Plate{i}", -1, None)
    return model


def attribute(iec, model, reference: str):  # type: ignore[no-untyped-def]
    node = iec.IedModel_getModelNodeByObjectReference(model, reference)
    if node is None:
        raise RuntimeError(f"model has no {reference}")
    return iec.toDataAttribute(node)


def start(iec, model, host: str, port: int, value: float, plates: int):  # type: ignore[no-untyped-def]
    server = iec.IedServer_create(model)
    if server is None:
        raise RuntimeError("IedServer_create failed")
    iec.IedServer_setLocalIpAddress(server, host)
    iec.IedServer_setWriteAccessPolicy(server, iec.IEC61850_FC_SP, iec.ACCESS_POLICY_ALLOW)
    iec.IedServer_updateFloatAttributeValue(server, attribute(iec, model, base.REFERENCE), value)
    iec.IedServer_updateFloatAttributeValue(server, attribute(iec, model, SETPOINT), 1.0)
    for i in range(1, plates + 1):
        for name in FIELDS:
            ref = f"testmodelSENSORS/GGIO2.Plate{i}.{name}"
            iec.IedServer_updateVisibleStringAttributeValue(
                server, attribute(iec, model, ref), plate(i, name)
            )
    iec.IedServer_start(server, port)
    if not iec.IedServer_isRunning(server):
        iec.IedServer_destroy(server)
        return None
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--value", type=float, default=base.DEFAULT_VALUE)
    ap.add_argument("--plates", type=int, default=30)
    args = ap.parse_args(argv)
    iec = base.load_iec()
    model = build(iec, args.value, args.plates)
    server = None
    try:
        for _ in range(5 if args.port == 0 else 1):
            port = base.free_port(args.host) if args.port == 0 else args.port
            server = start(iec, model, args.host, port, args.value, args.plates)
            if server is not None:
                break
        if server is None:
            base._err(f"cannot listen on {args.host}:{args.port}")
            return base.EXIT_CANNOT_LISTEN
        print(f"READY {port}", flush=True)
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        for line in sys.stdin:
            if line.strip() == "STOP" and server is not None:
                iec.IedServer_stop(server)
                sys.stderr.write("STOPPED\n")
                sys.stderr.flush()
        return base.EXIT_OK
    finally:
        if server is not None:
            if iec.IedServer_isRunning(server):
                iec.IedServer_stop(server)
            iec.IedServer_destroy(server)
        iec.IedModel_destroy(model)


if __name__ == "__main__":
    sys.exit(main())
