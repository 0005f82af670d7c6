"""Read an offline wandb run back: run-<id>.wandb is a LevelDB-style log (32 KiB blocks of checksummed chunks; one
record may span blocks) of wandb's own protobuf ``Record`` messages."""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

BLOCK, HEADER = 32768, 7            # block size; both the file header and each chunk header are 7 bytes
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def chunks(path: Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a wandb transaction log")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:           # a block's tail too short for a chunk header is zero padding
            pos += room
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        body = data[pos + HEADER:pos + HEADER + length]
        if kind == 0 and length == 0:
            pos += room
            continue
        if len(body) < length:
            raise ValueError(f"{path}: chunk at byte {pos} cut short (file not flushed)")
        if zlib.crc32(bytes([kind]) + body) & 0xFFFFFFFF != checksum:
            raise ValueError(f"{path}: bad checksum at byte {pos}")
        pos += HEADER + length
        if kind == FULL:
            yield body
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            yield pending + body


def read_run(path: Path) -> dict:
    """{'group', 'config': {key: value}, 'history': [{key: value}], 'summary': {key: value}} of one offline run."""
    from wandb.proto import wandb_internal_pb2

    out: dict = {"group": None, "config": {}, "history": [], "summary": {}}
    for chunk in chunks(path):
        record = wandb_internal_pb2.Record.FromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"] = record.run.run_group or None
            out["config"].update(_items(record.run.config.update))
        elif kind == "config":
            out["config"].update(_items(record.config.update))
        elif kind == "history":
            out["history"].append(_flat(_items(record.history.item)))
        elif kind == "summary":
            out["summary"].update(_flat(_items(record.summary.update)))
    return out


def _items(items) -> dict:
    return {"/".join(i.nested_key) if i.nested_key else i.key: json.loads(i.value_json) for i in items}


def _flat(summary: dict) -> dict:
    """Keys as 'table/nrows': newer wandb writes a logged table's or image list's fields as nested keys, older
    releases (0.17) the whole dict as one value."""
    out = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in _flat(value).items()})
        else:
            out[key] = value
    return out
