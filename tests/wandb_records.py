"""Read the records of an offline W&B run file (``run-*.wandb``) to check what a run holds.

The file is W&B's datastore: a 7-byte header, then LevelDB-log-style records in 32 KiB blocks, each record a
protobuf ``wandb.proto.wandb_internal_pb2.Record``. The wandb package no longer ships a reader for it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes):
    pos, buf = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + HEADER: pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            buf = chunk
        elif kind == MIDDLE:
            buf += chunk
        elif kind == LAST:
            yield buf + chunk
            buf = b""


def read_run(path: Path) -> dict:
    """{'name', 'group', 'project', 'config': {...}, 'history': [{...}], 'summary': {...}, 'exit_code'}."""
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict = {"config": {}, "history": [], "summary": {}, "exit_code": None}
    for payload in _payloads(Path(path).read_bytes()):
        r = pb.Record()
        r.ParseFromString(payload)
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(name=r.run.display_name, group=r.run.run_group, project=r.run.project)
            for item in r.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in r.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            for i in r.summary.update:
                out["summary"][i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
        elif kind == "exit":
            out["exit_code"] = r.exit.exit_code
    return out
