"""Reading back a W&B offline run without a server: its ``run-<id>.wandb`` file is a LevelDB-style
log (32 KiB blocks of checksummed chunks) of W&B's own protobuf ``Record`` messages.  W&B 0.31
reads the file only inside its Go core (``wandb sync``, ``wandb beta leet``); this reads the framing
(checking every chunk's CRC-32, as W&B writes it) and decodes each message with W&B's own
``wandb.proto.wandb_internal_pb2.Record``."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

BLOCK = 32768
HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version
CHUNK = struct.Struct("<IHB")  # CRC-32 of (type byte, data), data length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, _ = HEADER.unpack_from(data, 0)
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path}: not a W&B run log"
    out, pos, pending = [], HEADER.size, b""
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # the rest of a block too short for a header is padding
            pos += left
            continue
        crc, length, kind = CHUNK.unpack_from(data, pos)
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + CHUNK.size:pos + CHUNK.size + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"{path}: chunk at {pos} damaged"
        pos += CHUNK.size + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def run_of(path: Path) -> dict:
    """What the run log says: the run's name, group and config, its history by step, its summary."""
    run, history, summary, config = {}, {}, {}, {}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = {"name": r.run.display_name, "group": r.run.run_group, "project": r.run.project}
            config.update({u.key: json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            history[items["_step"]] = {k: v for k, v in items.items() if not k.startswith("_")}
        elif kind == "summary":
            summary.update({(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in r.summary.update})
    return dict(run, config=config, history=history, summary=summary)
